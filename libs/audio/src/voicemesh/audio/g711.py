"""G.711 μ-law (PCMU) and A-law (PCMA) codecs over PCM16 LE bytes.

Lookup tables follow ITU-T G.711 as in the reference Sun `g711.c` (the same tables as
CPython's `audioop`): μ-law works on the top 14 bits of a sample, A-law on the top 13.
Encoding indexes a 65536-entry table by the sample, decoding a 256-entry table by the code.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_PCM16 = np.dtype("<i2")

# Upper bounds of the eight segments, in the codec's own (shifted) units.
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _all_samples() -> np.ndarray:
    """Every int16 value, ordered by its uint16 bit pattern (the table index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


@cache
def _ulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    pcm = _all_samples() >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    encode = (code ^ mask).astype(np.uint8)

    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    decode = np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(_PCM16)
    return encode, decode


@cache
def _alaw_tables() -> tuple[np.ndarray, np.ndarray]:
    pcm = _all_samples() >> 3
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    mag = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (np.minimum(seg, 7) << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    encode = (code ^ mask).astype(np.uint8)

    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg_d = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(seg_d == 0, 8, 0x108)
    t = t << np.maximum(seg_d - 1, 0)
    decode = np.where(a & 0x80, t, -t).astype(_PCM16)
    return encode, decode


def _pcm_index(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data truncated: {len(pcm)} bytes is not a whole number of samples")
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_decode(data: bytes) -> bytes:
    """μ-law codes (one byte per sample) -> PCM16 LE."""
    return _ulaw_tables()[1][np.frombuffer(data, dtype=np.uint8)].tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE -> μ-law codes (one byte per sample)."""
    return _ulaw_tables()[0][_pcm_index(pcm)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law codes (one byte per sample) -> PCM16 LE."""
    return _alaw_tables()[1][np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE -> A-law codes (one byte per sample)."""
    return _alaw_tables()[0][_pcm_index(pcm)].tobytes()
