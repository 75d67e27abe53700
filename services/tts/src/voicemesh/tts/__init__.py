"""voicemesh tts: streaming speech synthesis (piper), clause chunking, cancellation.

Build a `PiperEngine`, `load()` it (blocking, before reporting healthy), and serve
`TtsServicer(engine, metrics, events, tracer)` on a grpc.aio server.
"""

from __future__ import annotations

from .chunker import ClauseChunker
from .engine import (
    DEFAULT_VOICE,
    PiperEngine,
    SpeechEngine,
    UnknownVoiceError,
    Voice,
    VoiceFiles,
    bundled_voices,
)
from .output import OutputFormat, parse_format
from .servicer import StreamLimits, TtsServicer

__all__ = [
    "DEFAULT_VOICE",
    "ClauseChunker",
    "OutputFormat",
    "PiperEngine",
    "SpeechEngine",
    "StreamLimits",
    "TtsServicer",
    "UnknownVoiceError",
    "Voice",
    "VoiceFiles",
    "bundled_voices",
    "parse_format",
]
