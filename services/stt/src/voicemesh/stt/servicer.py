"""The `SpeechToText` gRPC servicer: validates each stream's config and runs a
`RecognizeStream` for it. It reports the decode queue, `voicemesh_queue_depth{queue="decode"}`:
decodes on the engine (running or queued for its worker) and decodes waiting for their
stream's turn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from opentelemetry import trace

from voicemesh.audio.vad import Vad
from voicemesh.mesh.events import EventSink
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.tracing import incoming_context
from voicemesh.v1 import stt_pb2, stt_pb2_grpc

from .config import ConfigError, parse_config
from .engine import SpeechEngine
from .segmenter import SegmenterConfig
from .stream import MEDIA_LABEL, DecodeBacklog, InvalidInput, RecognizeStream, StreamLimits

log = logging.getLogger(__name__)


class SttServicer(stt_pb2_grpc.SpeechToTextServicer):
    """`vad_factory` makes one detector per stream that does not bring its own
    (`client_vad`), e.g. `lambda: SileroVad(shared_silero_model)`; the engine must be loaded
    before serving."""

    def __init__(
        self,
        engine: SpeechEngine,
        vad_factory: Callable[[], Vad],
        metrics: ServiceMetrics,
        events: EventSink,
        tracer: trace.Tracer,
        *,
        segmenter_defaults: SegmenterConfig | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.engine = engine
        self._vad_factory = vad_factory
        self._metrics = metrics
        self._events = events
        self._tracer = tracer
        self._defaults = segmenter_defaults or SegmenterConfig()
        self._limits = limits or StreamLimits()
        self.active_streams = 0
        self._backlog = DecodeBacklog()
        metrics.watch_queue("decode", self.decode_queue_depth)
        metrics.prepare_media(MEDIA_LABEL)

    def decode_queue_depth(self) -> int:
        """Decodes waiting or running: on the engine, or waiting for their stream's turn."""
        return self.engine.pending + self._backlog.waiting

    async def Recognize(
        self,
        request_iterator: AsyncIterator[stt_pb2.RecognizeRequest],
        context: grpc.aio.ServicerContext[stt_pb2.RecognizeRequest, stt_pb2.RecognizeResponse],
    ) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            await self._reject(context, "bad_request", "the stream ended before its config")
            return
        if first.WhichOneof("kind") != "config":
            await self._reject(context, "bad_request", "the first request must carry config")
            return
        try:
            config = parse_config(first.config, self.engine.languages, self._defaults)
        except ConfigError as exc:
            await self._reject(context, "bad_config", str(exc))
            return

        stream = RecognizeStream(
            config,
            engine=self.engine,
            vad=None if config.client_vad else self._vad_factory(),
            metrics=self._metrics,
            events=self._events,
            tracer=self._tracer,
            trace_context=incoming_context(context.invocation_metadata()),
            limits=self._limits,
            backlog=self._backlog,
        )
        self._metrics.session_started()
        self.active_streams += 1
        outcome = "error"
        log.info("recognize stream started", extra={"session_id": config.session_id})
        try:
            await stream.run(requests, context.write)
            outcome = "ok"
        except InvalidInput as exc:
            outcome = "invalid"
            await self._reject(context, exc.kind, str(exc))
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            self._metrics.error("internal")
            log.exception("recognize stream failed", extra={"session_id": config.session_id})
            await context.abort(grpc.StatusCode.INTERNAL, "speech recognition failed")
        finally:
            self.active_streams -= 1
            self._metrics.session_ended(outcome)
            log.info(
                "recognize stream ended",
                extra={"session_id": config.session_id, "outcome": outcome},
            )

    async def _reject(
        self,
        context: grpc.aio.ServicerContext[stt_pb2.RecognizeRequest, stt_pb2.RecognizeResponse],
        kind: str,
        message: str,
    ) -> None:
        self._metrics.error(kind)
        log.info("recognize request rejected", extra={"kind": kind, "reason": message})
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
