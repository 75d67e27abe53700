"""The output format a client asks for in `SynthesisConfig.format`, checked.

tts speaks PCM16 mono only; it resamples to 8, 16 (the mesh's rate), 24 or 48 kHz and
frames to 10–60 ms (20 ms by default). A config without a format gets the mesh's format.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.v1 import audio_pb2

SUPPORTED_RATES = (8000, 16000, 24000, 48000)
SUPPORTED_FRAME_MS = (10, 20, 30, 40, 50, 60)
DEFAULT_RATE = 16000
DEFAULT_FRAME_MS = 20


@dataclass(frozen=True)
class OutputFormat:
    sample_rate: int = DEFAULT_RATE
    frame_ms: int = DEFAULT_FRAME_MS

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        return self.frame_samples * 2


def parse_format(fmt: audio_pb2.AudioFormat | None) -> OutputFormat:
    """The format to produce; ValueError naming the bad field. None means the default.

    Zero `channels` and `frame_ms` mean "default" (mono, 20 ms); encoding and rate must be set.
    """
    if fmt is None:
        return OutputFormat()
    if fmt.encoding != audio_pb2.AUDIO_ENCODING_PCM16:
        name = (
            audio_pb2.AudioEncoding.Name(fmt.encoding)
            if fmt.encoding in (audio_pb2.AudioEncoding.values())
            else str(fmt.encoding)
        )
        raise ValueError(f"format.encoding {name} is not supported (only AUDIO_ENCODING_PCM16)")
    if fmt.sample_rate_hz not in SUPPORTED_RATES:
        raise ValueError(
            f"format.sample_rate_hz {fmt.sample_rate_hz} is not supported "
            f"(one of {', '.join(map(str, SUPPORTED_RATES))})"
        )
    if fmt.channels not in (0, 1):
        raise ValueError(f"format.channels {fmt.channels} is not supported (mono only)")
    frame_ms = fmt.frame_ms or DEFAULT_FRAME_MS
    if frame_ms not in SUPPORTED_FRAME_MS:
        raise ValueError(
            f"format.frame_ms {fmt.frame_ms} is not supported "
            f"(one of {', '.join(map(str, SUPPORTED_FRAME_MS))})"
        )
    return OutputFormat(sample_rate=fmt.sample_rate_hz, frame_ms=frame_ms)
