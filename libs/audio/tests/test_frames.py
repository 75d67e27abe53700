from __future__ import annotations

import numpy as np
import pytest

from voicemesh.audio import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SILENCE_DBFS,
    Framer,
    float_to_pcm16,
    pcm16_to_float,
    rms_dbfs,
    split_frames,
)

pytestmark = pytest.mark.unit


def test_constants_describe_20ms_pcm16_at_16khz() -> None:
    assert (SAMPLE_RATE, FRAME_SAMPLES, FRAME_BYTES) == (16000, 320, 640)


def test_framer_reassembles_a_stream_cut_at_odd_places() -> None:
    stream = bytes(range(256)) * 10  # 2560 bytes = 4 frames
    framer = Framer()
    frames: list[bytes] = []
    for size in (1, 639, 700, 3, 1000, 217):
        chunk, stream = stream[:size], stream[size:]
        frames += framer.push(chunk)
    assert [len(f) for f in frames] == [640] * 4
    assert b"".join(frames) == (bytes(range(256)) * 10)
    assert framer.pending == 0
    assert framer.flush() is None


def test_framer_flush_pads_the_remainder_with_silence() -> None:
    framer = Framer()
    assert framer.push(b"\x01" * 700) == [b"\x01" * 640]
    assert framer.flush() == b"\x01" * 60 + bytes(580)
    assert framer.flush() is None


def test_framer_flush_without_pad_keeps_the_short_tail() -> None:
    framer = Framer(4)
    assert framer.push(b"abcdefg") == [b"abcd"]
    assert framer.flush(pad=False) == b"efg"


def test_framer_rejects_a_zero_frame_size() -> None:
    with pytest.raises(ValueError, match="frame_bytes"):
        Framer(0)


def test_split_frames() -> None:
    assert split_frames(b"x" * 1300) == [b"x" * 640, b"x" * 640, b"x" * 20 + bytes(620)]
    assert split_frames(b"x" * 1300, pad=False)[-1] == b"x" * 20
    assert split_frames(b"") == []


def test_float_conversion_round_trips_and_clips() -> None:
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype="<i2").tobytes()
    x = pcm16_to_float(pcm)
    assert x.dtype == np.float32
    assert x.min() == -1.0 and x.max() < 1.0
    assert float_to_pcm16(x) == pcm
    clipped = np.frombuffer(float_to_pcm16(np.array([-3.0, 3.0])), dtype="<i2")
    assert clipped.tolist() == [-32768, 32767]


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="truncated"):
        pcm16_to_float(b"\x00\x00\x00")


def test_rms_dbfs_levels() -> None:
    assert rms_dbfs(bytes(640)) == SILENCE_DBFS
    assert rms_dbfs(b"") == SILENCE_DBFS
    full_square = np.array([32767, -32768] * 160, dtype="<i2").tobytes()
    assert rms_dbfs(full_square) == pytest.approx(0.0, abs=0.01)
    t = np.arange(1600) / SAMPLE_RATE
    sine = float_to_pcm16(0.1 * np.sin(2 * np.pi * 440 * t))
    assert rms_dbfs(sine) == pytest.approx(-23.0, abs=0.1)  # 20*log10(0.1/sqrt(2))


def test_real_speech_is_well_above_silence(jfk_pcm: bytes) -> None:
    assert -30.0 < rms_dbfs(jfk_pcm) < -10.0
