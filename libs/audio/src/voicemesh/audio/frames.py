"""The mesh's audio unit: PCM16 little-endian mono at 16 kHz in 20 ms frames.

`Framer` cuts an arbitrary byte stream into whole frames; the helpers convert between
PCM16 bytes and float samples and measure loudness.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # 640

SILENCE_DBFS = -120.0
"""What `rms_dbfs` reports for digital silence (and for no audio at all)."""

_PCM16 = np.dtype("<i2")


class Framer:
    """Cuts a stream of bytes into frames of exactly `frame_bytes` bytes.

    `push` returns every frame completed by the new data and keeps the remainder;
    `flush` hands out that remainder at the end of the stream.
    """

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back until a frame is complete."""
        return len(self._buffer)

    def push(self, data: bytes) -> list[bytes]:
        """Add `data`; return the frames it completes (possibly none)."""
        self._buffer += data
        size = self.frame_bytes
        whole = len(self._buffer) - len(self._buffer) % size
        if whole == 0:
            return []
        frames = [bytes(self._buffer[i : i + size]) for i in range(0, whole, size)]
        del self._buffer[:whole]
        return frames

    def flush(self, pad: bool = True) -> bytes | None:
        """Return the remainder (zero-padded to a whole frame when `pad`), or None if empty."""
        if not self._buffer:
            return None
        rest = bytes(self._buffer)
        self._buffer.clear()
        if pad:
            rest += bytes(self.frame_bytes - len(rest))
        return rest


def split_frames(pcm: bytes, frame_bytes: int = FRAME_BYTES, pad: bool = True) -> list[bytes]:
    """Split `pcm` into frames; the last partial frame is zero-padded (`pad`) or kept short."""
    framer = Framer(frame_bytes)
    frames = framer.push(pcm)
    rest = framer.flush(pad=pad)
    if rest is not None:
        frames.append(rest)
    return frames


def _samples(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data truncated: {len(pcm)} bytes is not a whole number of samples")
    return np.frombuffer(pcm, dtype=_PCM16)


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """PCM16 LE bytes -> float32 samples in [-1, 1)."""
    return _samples(pcm).astype(np.float32) / np.float32(32768.0)


def float_to_pcm16(x: np.ndarray) -> bytes:
    """Float samples (nominally [-1, 1]) -> PCM16 LE bytes, rounded and clipped."""
    scaled = np.rint(np.asarray(x, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(_PCM16).tobytes()


def rms_dbfs(pcm: bytes) -> float:
    """RMS level relative to full scale (a full-scale square wave is 0 dBFS).

    Digital silence and empty input give `SILENCE_DBFS` (-120.0).
    """
    samples = _samples(pcm)
    if samples.size == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    if rms == 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(rms / 32768.0))
