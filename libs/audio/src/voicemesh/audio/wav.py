"""Reading callers' WAV files into mesh audio (PCM16 LE mono 16 kHz), and writing WAVs.

Every problem with an input file raises `AudioFormatError` with one line that names the
file and says what is wrong.
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicemesh.audio.frames import SAMPLE_RATE
from voicemesh.audio.resample import resample

SUPPORTED_RATES = (8000, 16000, 22050, 44100, 48000)
SUPPORTED_WIDTHS = (1, 2, 3, 4)  # 8-bit unsigned, 16/24/32-bit signed PCM

_FORMAT_NAMES = {
    3: "32-bit float",
    6: "A-law",
    7: "μ-law",
    0x11: "IMA ADPCM",
    0x55: "MP3",
    0xFFFE: "WAVE_FORMAT_EXTENSIBLE",
}
_CONVERT_HINT = "convert it to 16-bit PCM, e.g. sox in.wav -b 16 -e signed-integer out.wav"


class AudioFormatError(ValueError):
    """An audio file voicemesh cannot use; the message is one line naming the file."""


@dataclass(frozen=True)
class WavInfo:
    """What the file held (before downmixing and resampling)."""

    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample
    frames: int
    duration_s: float


def _rates_text() -> str:
    *head, last = (str(r) for r in SUPPORTED_RATES)
    return f"{', '.join(head)} or {last}"


def _open_error(name: str, err: Exception) -> AudioFormatError:
    text = str(err)
    match = re.search(r"unknown format: (\d+)", text)
    if match:
        tag = int(match.group(1))
        what = _FORMAT_NAMES.get(tag, f"format tag {tag:#06x}")
        return AudioFormatError(f"{name}: {what} WAV is not supported ({_CONVERT_HINT})")
    if isinstance(err, EOFError):
        return AudioFormatError(f"{name}: truncated WAV header")
    return AudioFormatError(f"{name}: unreadable WAV ({text})")


def _to_int16(raw: bytes, width: int) -> np.ndarray:
    if width == 1:
        return ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if width == 3:  # keep the top two bytes of each little-endian 24-bit sample
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)[:, 1:].copy().view("<i2")[:, 0]
    return (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)


def read_wav(path: str | Path) -> tuple[bytes, WavInfo]:
    """Read a PCM WAV file; return PCM16 LE mono 16 kHz bytes and the file's own format.

    Stereo is downmixed by averaging; other rates are resampled to 16 kHz.
    """
    path = Path(path)
    name = path.name
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except FileNotFoundError:
        raise AudioFormatError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise AudioFormatError(f"{name}: is a directory, not a WAV file") from None
    except OSError as err:
        raise AudioFormatError(f"{name}: cannot be read ({err.strerror})") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFormatError(f"{name} is not a WAV file (no RIFF/WAVE header)")

    try:
        with wave.open(str(path), "rb") as w:
            rate, channels = w.getframerate(), w.getnchannels()
            width, nframes = w.getsampwidth(), w.getnframes()
            raw = w.readframes(nframes)
    except (wave.Error, EOFError) as err:
        raise _open_error(name, err) from None

    if rate not in SUPPORTED_RATES:
        raise AudioFormatError(f"{name}: sample rate {rate} Hz is not supported (use {_rates_text()})")
    if channels not in (1, 2):
        raise AudioFormatError(f"{name}: {channels} channels (use mono or stereo)")
    if width not in SUPPORTED_WIDTHS:
        raise AudioFormatError(
            f"{name}: {8 * width}-bit samples are not supported (use 8, 16, 24 or 32-bit PCM)"
        )
    block = width * channels
    raw = raw[: len(raw) - len(raw) % block]  # a truncated data chunk ends mid-frame
    frames = len(raw) // block
    if frames == 0:
        raise AudioFormatError(f"{name}: empty (no audio frames)")

    samples = _to_int16(raw, width)
    if channels == 2:
        pairs = samples.reshape(-1, 2).astype(np.int32)
        samples = ((pairs[:, 0] + pairs[:, 1]) >> 1).astype(np.int16)
    samples = resample(samples, rate, SAMPLE_RATE)
    info = WavInfo(rate, channels, width, frames, frames / rate)
    return samples.astype("<i2").tobytes(), info


def write_wav(path: str | Path, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono PCM16 LE `pcm` as a WAV file."""
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data truncated: {len(pcm)} bytes is not a whole number of samples")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
