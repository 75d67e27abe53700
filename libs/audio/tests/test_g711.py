from __future__ import annotations

import warnings

import numpy as np
import pytest

from voicemesh.audio import alaw_decode, alaw_encode, resample, ulaw_decode, ulaw_encode

pytestmark = pytest.mark.unit

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2").tobytes()


def _pcm(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def _ints(pcm: bytes) -> list[int]:
    return np.frombuffer(pcm, dtype="<i2").tolist()


def test_ulaw_known_values() -> None:
    assert _ints(ulaw_decode(b"\xff\x00\x80\x7f")) == [0, -32124, 32124, 0]
    assert ulaw_encode(_pcm(0, 32767, -32768, -32124)) == b"\xff\x80\x00\x00"


def test_alaw_known_values() -> None:
    assert _ints(alaw_decode(b"\xd5\x55\xaa\x2a")) == [8, -8, 32256, -32256]
    assert alaw_encode(_pcm(0, -1, 32767, -32768)) == b"\xd5\x55\xaa\x2a"


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_every_code_survives_decode_then_encode(encode, decode) -> None:  # type: ignore[no-untyped-def]
    again = encode(decode(ALL_CODES))
    # μ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
    differing = [code for code, back in zip(ALL_CODES, again, strict=True) if code != back]
    assert differing in ([], [0x7F])


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_encoding_error_is_within_half_a_step(encode, decode) -> None:  # type: ignore[no-untyped-def]
    x = np.frombuffer(ALL_SAMPLES, dtype="<i2").astype(np.int32)
    y = np.frombuffer(decode(encode(ALL_SAMPLES)), dtype="<i2").astype(np.int32)
    error = np.abs(x - y)
    inner = np.abs(x) < 30000  # beyond that the codec clips at its largest code
    assert np.all(error[inner] <= np.maximum(8, np.abs(x[inner]) // 16 + 8))
    assert np.all(np.sign(y[np.abs(x) > 64]) == np.sign(x[np.abs(x) > 64]))


def test_tables_match_cpython_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    assert ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="truncated"):
        ulaw_encode(b"\x00")


def test_carrier_ulaw_decodes_to_the_same_speech(jfk_pcm: bytes, jfk_ulaw: bytes) -> None:
    carrier = jfk_ulaw
    decoded = np.frombuffer(ulaw_decode(carrier), dtype="<i2").astype(np.float64)
    wideband = np.frombuffer(jfk_pcm, dtype="<i2").astype(np.int16)
    reference = resample(wideband, 16000, 8000).astype(np.float64)
    assert decoded.size == reference.size == 88000  # 11 s at 8 kHz
    assert np.corrcoef(decoded, reference)[0, 1] > 0.99
    snr_db = 10 * np.log10(np.sum(reference**2) / np.sum((reference - decoded) ** 2))
    assert snr_db > 30  # μ-law quantisation noise is about 38 dB down
    assert ulaw_encode(ulaw_decode(carrier)) == carrier


def test_ulaw_and_alaw_each_round_trip_real_speech(jfk_pcm: bytes) -> None:
    x = np.frombuffer(jfk_pcm, dtype="<i2").astype(np.float64)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        coded = encode(jfk_pcm)
        assert len(coded) == len(jfk_pcm) // 2
        y = np.frombuffer(decode(coded), dtype="<i2").astype(np.float64)
        assert 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2)) > 30
