"""The end-of-turn model in the edge: loaded once per process, run off the event loop.

The rule (when a check is asked, what its answer may do) is the turn core's
(`turns.TurnTaker`); this module only holds the caller's recent audio for a call
(`CallerAudio`) and runs Smart Turn on one worker thread for every call of the process
(`TurnEndModel`). A check never waits long: one that would sit behind other calls' checks
for more than `max_wait_s` is skipped (the silence rule ends that turn) and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from voicemesh.audio.frames import FRAME_BYTES, FRAME_MS
from voicemesh.audio.smart_turn import WINDOW_SECONDS, SmartTurnModel
from voicemesh.mesh.metrics import ServiceMetrics

from .turns import EndpointBy

log = logging.getLogger(__name__)

WINDOW_FRAMES = WINDOW_SECONDS * 1000 // FRAME_MS  # the model hears the last 8 s: 400 frames
MODEL_STAGE = "smart_turn"  # voicemesh_stage_latency_seconds{stage}: one prediction
# Checks waiting for the worker, all calls together, past which a new one is skipped at once
# (each waits ~60 ms: more than two ahead already misses `max_wait_s`).
MAX_PENDING = 4


class CheckResult(StrEnum):
    """`result` of voicemesh_turn_checks_total."""

    RUN = "run"  # the model answered (whatever it said)
    SKIPPED = "skipped"  # not run: it would have waited too long, or one was in flight
    FAILED = "failed"  # the model raised


@dataclass(frozen=True)
class EndpointMetrics:
    """The edge's end-of-turn counters (on the service's registry, created once per process)."""

    service: str
    checks: Counter
    endpoints: Counter

    @classmethod
    def create(cls, metrics: ServiceMetrics) -> EndpointMetrics:
        labels = ["service"]
        out = cls(
            service=metrics.service,
            checks=Counter(
                "voicemesh_turn_checks_total",
                "End-of-turn model checks, by result (run, skipped, failed).",
                [*labels, "result"],
                registry=metrics.registry,
            ),
            endpoints=Counter(
                "voicemesh_endpoints_total",
                "Caller turns ended, by what decided it: silence, or the end-of-turn model (earlier).",
                [*labels, "decided_by"],
                registry=metrics.registry,
            ),
        )
        for result in CheckResult:
            out.checks.labels(out.service, result.value)
        for by in EndpointBy:
            out.endpoints.labels(out.service, by.value)
        return out

    def check(self, result: CheckResult) -> None:
        self.checks.labels(self.service, result.value).inc()

    def endpoint(self, by: EndpointBy) -> None:
        self.endpoints.labels(self.service, by.value).inc()


class CallerAudio:
    """The last 8 s of one call's caller audio (16 kHz PCM16 frames, gapless), by frame index."""

    def __init__(self, frames: int = WINDOW_FRAMES) -> None:
        self._frames: deque[bytes] = deque(maxlen=frames)
        self._next = 0  # index of the next frame to arrive

    def push(self, pcm: bytes) -> None:
        self._frames.append(pcm)
        self._next += 1

    def window(self, start_frame: int, end_frame: int) -> bytes:
        """Frames `start_frame`..`end_frame` (inclusive), as far as they are still held."""
        first = self._next - len(self._frames)
        lo, hi = max(start_frame, first), min(end_frame, self._next - 1)
        if hi < lo:
            return b""
        frames = list(self._frames)  # a deque indexes in O(n): slice a list of it once
        return b"".join(frames[lo - first : hi - first + 1])


class Predictor(Protocol):
    def predict(self, pcm16: bytes) -> float: ...


class TurnEndModel:
    """Smart Turn for every call of this edge process: one worker thread, checks in order."""

    def __init__(
        self,
        model: Predictor,
        metrics: ServiceMetrics,
        endpoints: EndpointMetrics,
        *,
        max_wait_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.endpoints = endpoints
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        self._pending = 0

    @classmethod
    def load(
        cls,
        path: str | Path | None,
        metrics: ServiceMetrics,
        endpoints: EndpointMetrics,
        *,
        max_wait_s: float = 0.1,
    ) -> TurnEndModel | None:
        """Load the model (blocking: call it in a thread at start-up); None, after one log
        line saying so, when it is missing or unusable: turns then end on silence alone."""
        try:
            model = SmartTurnModel.load(path, threads=1)
            model.predict(bytes(WINDOW_FRAMES * FRAME_BYTES))  # warm: the first run is the slowest
        except (FileNotFoundError, ValueError) as exc:
            log.warning("end-of-turn model not loaded: turns end on silence alone", extra={"error": str(exc)})
            return None
        log.info("end-of-turn model loaded", extra={"model": str(path or "default")})
        return cls(model, metrics, endpoints, max_wait_s=max_wait_s)

    async def check(self, pcm: bytes) -> float | None:
        """P(the utterance is complete), or None when the check was skipped or failed."""
        if self._pending >= MAX_PENDING:
            self.endpoints.check(CheckResult.SKIPPED)
            return None
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._pool, self._run, pcm, self._clock())
        except asyncio.CancelledError:
            raise
        except Exception:
            self.endpoints.check(CheckResult.FAILED)
            log.exception("end-of-turn model failed")
            return None
        finally:
            self._pending -= 1
        if result is None:
            self.endpoints.check(CheckResult.SKIPPED)
            return None
        probability, seconds = result
        self.endpoints.check(CheckResult.RUN)
        self.metrics.observe_stage(MODEL_STAGE, seconds)
        return probability

    def _run(self, pcm: bytes, submitted: float) -> tuple[float, float] | None:
        """On the worker thread: skip a check that waited too long for its turn."""
        if self._clock() - submitted > self.max_wait_s:
            return None
        began = time.perf_counter()
        probability = self.model.predict(pcm)
        return probability, time.perf_counter() - began

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
