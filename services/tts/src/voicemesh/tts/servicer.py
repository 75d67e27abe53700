"""The `TextToSpeech` gRPC servicer: checks a stream's config and runs a `SynthesisStream`.

A client's mistakes end only its own stream, with a status naming what was wrong:
INVALID_ARGUMENT for a bad config (unknown voice, unsupported format, missing session id)
or a broken protocol, RESOURCE_EXHAUSTED when it queues more text than a stream holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from opentelemetry import trace

from voicemesh.mesh.events import EventSink, subject_for
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.tracing import incoming_context
from voicemesh.v1 import tts_pb2, tts_pb2_grpc

from .chunker import ClauseChunker
from .engine import SpeechEngine, UnknownVoiceError, Voice
from .output import OutputFormat, parse_format
from .responses import LimitExceeded, ProtocolError, ResponseBook
from .stream import SynthesisStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    """Per-stream knobs: chunking and the bounds on text a client may queue."""

    min_first_words: int = 3
    min_words: int = 6
    max_words: int = 30
    max_responses: int = 16
    max_pending_chars: int = 20_000


class TtsServicer(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(
        self,
        engine: SpeechEngine,
        metrics: ServiceMetrics,
        events: EventSink,
        tracer: trace.Tracer,
        limits: StreamLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._events = events
        self._tracer = tracer
        self._limits = limits or StreamLimits()
        self._clock = clock

    async def Synthesize(
        self,
        request_iterator: AsyncIterable[tts_pb2.SynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            self._metrics.error("invalid_config")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stream closed before config")
        try:
            session_id, voice, fmt = self._accept(first)
        except ValueError as exc:
            self._metrics.error("invalid_config")
            log.info("tts config rejected", extra={"reason": str(exc)})
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

        stream = SynthesisStream(
            session_id=session_id,
            voice=voice,
            fmt=fmt,
            engine=self._engine,
            book=self._new_book(),
            write=context.write,
            metrics=self._metrics,
            events=self._events,
            tracer=self._tracer,
            trace_context=incoming_context(context.invocation_metadata()),
            clock=self._clock,
        )
        log.info(
            "tts stream started",
            extra={"session_id": session_id, "voice": voice.voice_id, "rate": fmt.sample_rate},
        )
        self._metrics.session_started()
        outcome = "error"
        try:
            failure = await self._serve(stream, requests)
            outcome = "ok" if failure is None else "rejected"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self._metrics.session_ended(outcome)
            log.info("tts stream ended", extra={"session_id": session_id, "outcome": outcome})
        if failure is not None:
            await context.abort(*failure)

    async def _serve(
        self, stream: SynthesisStream, requests: AsyncIterator[tts_pb2.SynthesizeRequest]
    ) -> tuple[grpc.StatusCode, str] | None:
        """Run the stream; a client's mistake comes back as the status to end it with."""
        failure: tuple[grpc.StatusCode, str] | None = None
        try:
            await stream.run(requests)
        except* ProtocolError as group:
            self._metrics.error("protocol")
            failure = (grpc.StatusCode.INVALID_ARGUMENT, str(group.exceptions[0]))
        except* LimitExceeded as group:
            self._metrics.error("limit")
            failure = (grpc.StatusCode.RESOURCE_EXHAUSTED, str(group.exceptions[0]))
        return failure

    def _accept(self, first: tts_pb2.SynthesizeRequest) -> tuple[str, Voice, OutputFormat]:
        """The stream's session id, voice and format; ValueError naming what is wrong."""
        if first.WhichOneof("kind") != "config":
            raise ValueError("the first request must carry config")
        config = first.config
        if not config.session_id:
            raise ValueError("config.session_id is empty")
        try:
            subject_for(config.session_id, "speech_synthesized")
        except ValueError:
            raise ValueError(
                f"config.session_id {config.session_id!r} must not contain dots, wildcards or whitespace"
            ) from None
        try:
            voice = self._engine.voice(config.voice)
        except UnknownVoiceError as exc:
            raise ValueError(f"config.voice: {exc}") from None
        fmt = parse_format(config.format if config.HasField("format") else None)
        return config.session_id, voice, fmt

    def _new_book(self) -> ResponseBook:
        lim = self._limits
        return ResponseBook(
            chunker_factory=lambda: ClauseChunker(lim.min_first_words, lim.min_words, lim.max_words),
            max_responses=lim.max_responses,
            max_pending_chars=lim.max_pending_chars,
        )
