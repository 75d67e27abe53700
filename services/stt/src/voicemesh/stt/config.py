"""Validating a stream's `RecognitionConfig` into the settings the segmenter runs with."""

from __future__ import annotations

from dataclasses import dataclass, replace

from voicemesh.audio.frames import FRAME_MS, SAMPLE_RATE
from voicemesh.mesh.events import subject_for
from voicemesh.v1 import audio_pb2, stt_pb2

from .segmenter import SegmenterConfig

MIN_ENDPOINT_SILENCE_MS = 200
# How long a decode takes (tiny.en, 2 cores: 250-350 ms) and the shortest pause worth a
# speculative decode: a pause decode starts early enough to be done when the endpoint
# fires, so the final costs nothing even with a short endpoint silence.
EXPECTED_DECODE_MS = 320
MIN_SPECULATIVE_SILENCE_MS = 80
MAX_ENDPOINT_SILENCE_MS = 10_000


class ConfigError(ValueError):
    """A config the service cannot serve; the message names the offending field."""


@dataclass(frozen=True)
class StreamConfig:
    session_id: str
    language: str  # primary subtag, lower case ("en")
    segmenter: SegmenterConfig
    client_vad: bool = False
    """Segment on each frame's `speech_probability`; the stream runs no VAD of its own."""


def parse_config(
    config: stt_pb2.RecognitionConfig,
    languages: frozenset[str] | None,
    defaults: SegmenterConfig | None = None,
) -> StreamConfig:
    """Check `config` against what the service serves; raise ConfigError naming the field.

    `languages`: the engine's primary language subtags (None: any). Endpointing left
    unspecified means internal; `endpoint_silence_ms` 0 means the default.
    """
    base = defaults or SegmenterConfig()
    try:
        subject_for(config.session_id, "transcript")
    except ValueError:
        raise ConfigError(
            "config.session_id must be a non-empty token without dots, wildcards or spaces"
        ) from None

    fmt = config.format
    if fmt.encoding != audio_pb2.AUDIO_ENCODING_PCM16:
        got = (
            audio_pb2.AudioEncoding.Name(fmt.encoding)
            if fmt.encoding in audio_pb2.AudioEncoding.values()
            else str(fmt.encoding)
        )
        raise ConfigError(f"config.format.encoding must be AUDIO_ENCODING_PCM16, got {got}")
    if fmt.sample_rate_hz != SAMPLE_RATE:
        raise ConfigError(f"config.format.sample_rate_hz must be {SAMPLE_RATE}, got {fmt.sample_rate_hz}")
    if fmt.channels != 1:
        raise ConfigError(f"config.format.channels must be 1 (mono), got {fmt.channels}")
    if fmt.frame_ms not in (0, FRAME_MS):
        raise ConfigError(f"config.format.frame_ms must be {FRAME_MS}, got {fmt.frame_ms}")

    language = config.language.strip().lower()
    primary = language.split("-", 1)[0]
    if not primary:
        raise ConfigError('config.language is required (a BCP-47 tag such as "en")')
    if languages is not None and primary not in languages:
        raise ConfigError(
            f"config.language {config.language!r} is not supported by this service's model "
            f"(supported: {', '.join(sorted(languages))})"
        )

    endpointing = config.endpointing
    if endpointing not in stt_pb2.Endpointing.values():
        raise ConfigError(f"config.endpointing has unknown value {endpointing}")
    internal = endpointing != stt_pb2.ENDPOINTING_EXTERNAL
    silence = config.endpoint_silence_ms or base.endpoint_silence_ms
    if not MIN_ENDPOINT_SILENCE_MS <= silence <= MAX_ENDPOINT_SILENCE_MS:
        raise ConfigError(
            f"config.endpoint_silence_ms must be between {MIN_ENDPOINT_SILENCE_MS} and "
            f"{MAX_ENDPOINT_SILENCE_MS}, got {silence}"
        )
    segmenter = replace(
        base,
        internal_endpointing=internal,
        endpoint_silence_ms=silence,
        speculative_silence_ms=speculative_silence(base.speculative_silence_ms, silence),
        partials=config.partials,
    )
    return StreamConfig(
        session_id=config.session_id,
        language=primary,
        segmenter=segmenter,
        client_vad=config.client_vad,
    )


def speculative_silence(preferred_ms: int, endpoint_silence_ms: int) -> int:
    """When to take the pause decode: the preferred pause, or earlier when the endpoint
    would otherwise fire before the decode is done (never before MIN_SPECULATIVE_SILENCE_MS,
    never after the endpoint)."""
    early_enough = endpoint_silence_ms - EXPECTED_DECODE_MS
    chosen = max(MIN_SPECULATIVE_SILENCE_MS, min(preferred_ms, early_enough))
    return min(chosen, endpoint_silence_ms)
