"""Sample-rate conversion of mono PCM16 with soxr, one shot or chunk by chunk."""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]

_PCM16 = np.dtype("<i2")


def _check_rates(src_rate: int, dst_rate: int) -> None:
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int, quality: Quality = "HQ") -> np.ndarray:
    """Resample a whole mono int16 signal; returns int16 of about len * dst/src samples."""
    _check_rates(src_rate, dst_rate)
    if pcm.ndim != 1:
        raise ValueError(f"resample takes mono audio (1-D), got shape {pcm.shape}")
    if pcm.dtype != np.int16:
        raise ValueError(f"resample takes int16 samples, got {pcm.dtype}")
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.copy()
    return soxr.resample(pcm, src_rate, dst_rate, quality=quality)


class StreamResampler:
    """Stateful resampler for a PCM16 LE byte stream (live audio, chunk by chunk).

    Output trails input by a fixed filter delay; `flush` returns the tail at end of stream
    and readies the resampler for a new stream. A chunk with an odd byte count is fine: the
    odd byte waits for the next chunk.

    `steady` (the default) uses soxr's variable-rate engine, which returns output for every
    chunk with a constant delay (about 30 ms for 8->16 kHz, 15 ms for 16->8 kHz, 11-12 ms
    for 22.05/24/48 kHz) at the same ~87 dB SNR. soxr's fixed-rate engine is cheaper but
    works in blocks: fed 20 ms chunks it returns nothing for several chunks and then a burst,
    delaying audio by up to ~115 ms (8<->16 kHz) or ~40 ms (22.05/48 kHz), and lower
    `quality` ("MQ", "LQ") does not shorten that.
    """

    def __init__(self, src_rate: int, dst_rate: int, quality: Quality = "HQ", steady: bool = True) -> None:
        _check_rates(src_rate, dst_rate)
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.quality: Quality = quality
        self.steady = steady
        self._carry = b""
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.src_rate == self.dst_rate:
            return None
        return soxr.ResampleStream(
            self.src_rate, self.dst_rate, 1, dtype="int16", quality=self.quality, vr=self.steady
        )

    def process(self, pcm: bytes) -> bytes:
        """Feed PCM16 at `src_rate`; return whatever PCM16 at `dst_rate` is ready."""
        data = self._carry + pcm
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        if self._stream is None:
            return data[:whole]
        if whole == 0:
            return b""
        samples = np.frombuffer(data[:whole], dtype=_PCM16).astype(np.int16)
        return self._stream.resample_chunk(samples, last=False).astype(_PCM16).tobytes()

    def flush(self) -> bytes:
        """End of stream: return the remaining output. The resampler can then be reused."""
        self._carry = b""
        if self._stream is None:
            return b""
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self._stream = self._new_stream()
        return tail.astype(_PCM16).tobytes()
