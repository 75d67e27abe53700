"""Filler audio for the edge process: synthesized once per (voice, text), reused by every call.

A call whose agent has fillers asks for its phrases as soon as its tts peer is known
(`FillerCache.prepare`, run as a background task of the call): phrases the process holds are
ready at once; the others are synthesized on a tts stream of their own (`over_tts`: the
call's replies never queue behind them), each ready as soon as its audio is complete. A
phrase another call is synthesizing is waited for rather than synthesized twice.

The choice when a reply is late and a phrase is not ready yet: skip the filler (the call core
counts it), never wait for tts — a filler that arrives late is worse than none. Nothing is
evicted: the cache holds at most `max_phrases` phrases (a phrase beyond that is counted and
never ready), each at most `MAX_FILLER_FRAMES` frames long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
from prometheus_client import Counter

from voicemesh.mesh.metrics import ServiceMetrics

from .fillers import FillerResult
from .roles import TtsClient

log = logging.getLogger(__name__)

MAX_FILLER_FRAMES = 300  # 6 s of audio: a filler is a short phrase
MAX_PHRASES = 256

Key = tuple[str, str]  # (voice, text)
Audio = tuple[bytes, ...]  # 20 ms frames of 16 kHz PCM16
# Synthesizes phrases in a voice, yielding (text, frames) as each is complete.
Synthesize = Callable[[str, Sequence[str]], AsyncIterator[tuple[str, Audio]]]


@dataclass(frozen=True)
class FillerMetrics:
    """voicemesh_fillers_total{result} (on the service's registry, created once per process)."""

    service: str
    fillers: Counter

    @classmethod
    def create(cls, metrics: ServiceMetrics) -> FillerMetrics:
        out = cls(
            service=metrics.service,
            fillers=Counter(
                "voicemesh_fillers_total",
                "Fillers for late replies, by result: played, or skipped (its audio not ready yet).",
                ["service", "result"],
                registry=metrics.registry,
            ),
        )
        for result in FillerResult:
            out.fillers.labels(out.service, result.value)
        return out

    def count(self, result: FillerResult) -> None:
        self.fillers.labels(self.service, result.value).inc()


class FillerCache:
    def __init__(
        self, metrics: FillerMetrics, errors: ServiceMetrics, max_phrases: int = MAX_PHRASES
    ) -> None:
        self.metrics = metrics
        self.errors = errors
        self._max = max_phrases
        self._audio: dict[Key, Audio] = {}
        self._pending: dict[Key, asyncio.Event] = {}  # being synthesized by some call

    def get(self, voice: str, text: str) -> Audio | None:
        return self._audio.get((voice, text))

    async def prepare(self, voice: str, phrases: Sequence[str], synthesize: Synthesize) -> AsyncIterator[str]:
        """Each of `phrases` once its audio is held: the cached ones at once, then those this
        call synthesizes (with `synthesize`), then those another call was synthesizing. A
        phrase whose synthesis failed is left out (a later call tries again)."""
        mine, theirs = [], []
        for text in dict.fromkeys(phrases):
            key = (voice, text)
            if key in self._audio:
                yield text
            elif key in self._pending:
                theirs.append(text)
            elif len(self._audio) + len(self._pending) >= self._max:
                self.errors.error("filler_cache_full")
            else:
                self._pending[key] = asyncio.Event()
                mine.append(text)
        try:
            if mine:
                async for text, audio in synthesize(voice, mine):
                    if (voice, text) in self._pending and audio:
                        self._audio[(voice, text)] = audio[:MAX_FILLER_FRAMES]
                        yield text
        finally:
            for text in mine:
                done = self._pending.pop((voice, text), None)
                if done is not None:
                    done.set()
        for text in theirs:
            done = self._pending.get((voice, text))
            if done is not None:
                await done.wait()
            if (voice, text) in self._audio:
                yield text


async def fill(
    cache: FillerCache,
    voice: str,
    phrases: Sequence[str],
    synthesize: Synthesize,
    ready: Callable[[str], None],
) -> None:
    """Have `phrases` in the cache, calling `ready(text)` for each as it is: a call's
    background task. A failure costs the call those fillers (counted), nothing else."""
    try:
        async for text in cache.prepare(voice, phrases, synthesize):
            ready(text)
    except asyncio.CancelledError:
        raise
    except grpc.aio.AioRpcError as exc:
        cache.errors.error("filler_synthesis")
        log.warning("filler synthesis failed", extra={"voice": voice, "code": exc.code().name})
    except Exception:
        cache.errors.error("filler_bug")
        log.exception("filler synthesis crashed", extra={"voice": voice})


def over_tts(open_tts: Callable[[str], TtsClient]) -> Synthesize:
    """Synthesize on a tts stream opened for it alone (`open_tts(voice)`), closed after."""

    async def synthesize(voice: str, phrases: Sequence[str]) -> AsyncIterator[tuple[str, Audio]]:
        tts = open_tts(voice)
        try:
            async for item in speak(tts, phrases):
                yield item
        finally:
            await tts.aclose()

    return synthesize


async def speak(tts: TtsClient, phrases: Sequence[str]) -> AsyncIterator[tuple[str, Audio]]:
    """Each phrase a response of its own on `tts`, yielded with its frames once its "end"
    mark arrives."""
    names = {f"filler-{i}": text for i, text in enumerate(phrases)}
    frames: dict[str, list[bytes]] = {rid: [] for rid in names}
    for rid, text in names.items():
        tts.text(rid, text)
        tts.end(rid)
    async for msg in tts.responses():
        kind = msg.WhichOneof("kind")
        if kind == "audio" and msg.audio.response_id in frames:
            got = frames[msg.audio.response_id]
            if len(got) < MAX_FILLER_FRAMES:
                got.append(msg.audio.frame.pcm)
        elif kind == "mark" and msg.mark.name == "end" and msg.mark.response_id in frames:
            rid = msg.mark.response_id
            yield names[rid], tuple(frames.pop(rid))
            if not frames:
                return
