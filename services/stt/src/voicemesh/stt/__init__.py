"""voicemesh stt: streaming speech recognition (faster-whisper, VAD-segmented)."""

from __future__ import annotations

from .config import ConfigError, StreamConfig, parse_config
from .engine import DecodeResult, SpeechEngine, WhisperEngine, WhisperSettings, Word
from .segmenter import SegmenterConfig
from .servicer import SttServicer
from .stream import StreamLimits

__all__ = [
    "ConfigError",
    "DecodeResult",
    "SegmenterConfig",
    "SpeechEngine",
    "StreamConfig",
    "StreamLimits",
    "SttServicer",
    "WhisperEngine",
    "WhisperSettings",
    "Word",
    "parse_config",
]
