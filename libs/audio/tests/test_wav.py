from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from voicemesh.audio import SUPPORTED_RATES, AudioFormatError, WavInfo, read_wav, write_wav

pytestmark = pytest.mark.unit


def _tone(rate: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t) * 0.5


def _encode(x: np.ndarray, width: int) -> np.ndarray:
    """Float samples -> raw sample bytes (as uint8 rows) for a WAV of `width` bytes."""
    if width == 1:
        return (np.round(x * 127) + 128).astype(np.uint8).reshape(-1, 1)
    full = np.round(x * (2 ** (8 * width - 1) - 1)).astype("<i4")
    return full.view(np.uint8).reshape(-1, 4)[:, :width]


def _write(path: Path, rate: int, channels: int, width: int, frames: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return path


def _pcm_tone(path: Path, rate: int, channels: int, width: int, seconds: float = 0.5) -> Path:
    x = _tone(rate, seconds)
    return _write(path, rate, channels, width, np.hstack([_encode(x, width)] * channels))


def _ints(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


@pytest.mark.parametrize("rate", SUPPORTED_RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_every_accepted_format_becomes_16khz_mono(tmp_path: Path, rate: int, channels: int) -> None:
    path = _pcm_tone(tmp_path / "call.wav", rate, channels, 2)
    pcm, info = read_wav(path)
    assert info == WavInfo(rate, channels, 2, rate // 2, 0.5)
    samples = _ints(pcm)
    assert abs(samples.size - 8000) <= 1
    level = np.sqrt(np.mean(samples[200:-200] ** 2)) / 32768
    assert level == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    assert np.fft.rfftfreq(samples.size, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(440, abs=3)


def test_stereo_is_downmixed_by_averaging(tmp_path: Path) -> None:
    left = np.full(1600, 1000, dtype="<i2")
    right = np.full(1600, -3000, dtype="<i2")
    path = _write(tmp_path / "st.wav", 16000, 2, 2, np.column_stack([left, right]))
    pcm, info = read_wav(path)
    assert info.channels == 2
    assert set(_ints(pcm).tolist()) == {-1000.0}


@pytest.mark.parametrize("width", [1, 3, 4])
def test_other_pcm_sample_widths_are_read(tmp_path: Path, width: int) -> None:
    path = _pcm_tone(tmp_path / "w.wav", 16000, 1, width)
    pcm, info = read_wav(path)
    assert info.sample_width == width
    expected = _tone(16000) * 32768
    tolerance = 300 if width == 1 else 2
    assert np.max(np.abs(_ints(pcm) - expected)) <= tolerance


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    write_wav(tmp_path / "out.wav", pcm)
    again, info = read_wav(tmp_path / "out.wav")
    assert again == pcm
    assert info == WavInfo(16000, 1, 2, 1000, 1000 / 16000)


def test_write_at_another_rate(tmp_path: Path) -> None:
    write_wav(tmp_path / "n.wav", bytes(1600), sample_rate=8000)
    _, info = read_wav(tmp_path / "n.wav")
    assert (info.sample_rate, info.frames) == (8000, 800)


def _fmt_riff(tag: int, channels: int, rate: int, bits: int, extra: bytes, data: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits) + extra
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _error(path: Path) -> str:
    with pytest.raises(AudioFormatError) as caught:
        read_wav(path)
    message = str(caught.value)
    assert "\n" not in message
    assert isinstance(caught.value, ValueError)
    return message


def test_a_text_file_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not audio\n")
    assert _error(path) == "notes.txt is not a WAV file (no RIFF/WAVE header)"


def test_a_tiny_file_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"RIF")
    assert _error(path) == "x.wav is not a WAV file (no RIFF/WAVE header)"


def test_a_missing_file(tmp_path: Path) -> None:
    assert _error(tmp_path / "missing.wav") == "missing.wav: no such file"


def test_a_directory(tmp_path: Path) -> None:
    (tmp_path / "calls").mkdir()
    assert _error(tmp_path / "calls") == "calls: is a directory, not a WAV file"


def test_an_unsupported_rate(tmp_path: Path) -> None:
    path = _pcm_tone(tmp_path / "call.wav", 11025, 1, 2)
    assert _error(path) == (
        "call.wav: sample rate 11025 Hz is not supported (use 8000, 16000, 22050, 44100 or 48000)"
    )


def test_too_many_channels(tmp_path: Path) -> None:
    path = _write(tmp_path / "call.wav", 16000, 6, 2, np.zeros((100, 6), dtype="<i2"))
    assert _error(path) == "call.wav: 6 channels (use mono or stereo)"


def test_no_audio_frames(tmp_path: Path) -> None:
    path = _write(tmp_path / "call.wav", 16000, 1, 2, np.zeros(0, dtype="<i2"))
    assert _error(path) == "call.wav: empty (no audio frames)"


def test_a_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    path.write_bytes(_fmt_riff(1, 1, 16000, 16, b"", b"")[:20])
    assert _error(path) == "call.wav: truncated WAV header"


def test_a_truncated_data_chunk_keeps_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    data = np.arange(1000, dtype="<i2").tobytes()
    path.write_bytes(_fmt_riff(1, 1, 16000, 16, b"", data)[:-101])  # ends mid-sample
    pcm, info = read_wav(path)
    assert info.frames == 949
    assert pcm == data[: 949 * 2]


def test_float_wav_names_the_format(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    path.write_bytes(_fmt_riff(3, 1, 16000, 32, b"", bytes(400)))
    message = _error(path)
    assert message.startswith("f.wav: 32-bit float WAV is not supported (convert it to 16-bit PCM")


def test_extensible_wav_is_explained(tmp_path: Path) -> None:
    pcm_guid = bytes.fromhex("0100000000001000800000aa00389b71")
    extra = struct.pack("<HHI", 22, 16, 0x4) + pcm_guid
    path = tmp_path / "ext.wav"
    path.write_bytes(_fmt_riff(0xFFFE, 1, 16000, 16, extra, bytes(400)))
    message = _error(path)
    assert message.startswith("ext.wav: WAVE_FORMAT_EXTENSIBLE WAV is not supported (convert it")


def test_the_real_recording(jfk_pcm: bytes, jfk_wav: Path) -> None:
    _, info = read_wav(jfk_wav)
    assert info == WavInfo(16000, 1, 2, 176000, 11.0)
    assert len(jfk_pcm) == 176000 * 2
