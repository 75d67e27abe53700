from __future__ import annotations

import pytest

from voicemesh.tts.output import OutputFormat, parse_format
from voicemesh.v1 import audio_pb2

pytestmark = pytest.mark.unit

PCM16 = audio_pb2.AUDIO_ENCODING_PCM16


def test_no_format_means_the_mesh_format() -> None:
    fmt = parse_format(None)
    assert fmt == OutputFormat(16000, 20)
    assert (fmt.frame_samples, fmt.frame_bytes) == (320, 640)


@pytest.mark.parametrize(("rate", "frame_bytes"), [(8000, 320), (16000, 640), (24000, 960), (48000, 1920)])
def test_supported_rates(rate: int, frame_bytes: int) -> None:
    fmt = parse_format(audio_pb2.AudioFormat(encoding=PCM16, sample_rate_hz=rate, channels=1))
    assert fmt.sample_rate == rate and fmt.frame_ms == 20 and fmt.frame_bytes == frame_bytes


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        (audio_pb2.AudioFormat(sample_rate_hz=16000), "format.encoding AUDIO_ENCODING_UNSPECIFIED"),
        (audio_pb2.AudioFormat(encoding=PCM16, sample_rate_hz=44100), "format.sample_rate_hz 44100"),
        (audio_pb2.AudioFormat(encoding=PCM16), "format.sample_rate_hz 0"),
        (audio_pb2.AudioFormat(encoding=PCM16, sample_rate_hz=16000, channels=2), "format.channels"),
        (audio_pb2.AudioFormat(encoding=PCM16, sample_rate_hz=16000, frame_ms=25), "format.frame_ms"),
    ],
)
def test_bad_formats_are_named(fmt: audio_pb2.AudioFormat, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_format(fmt)
