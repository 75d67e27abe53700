"""One Recognize stream: the async shell around the `Segmenter`.

Three tasks under one TaskGroup:
- reader: checks each request, places each frame on the media timeline by its sequence
  (`media.Timeline`: out-of-order frames dropped) -> bounded `Intake` (frames dropped
  oldest-first when it is full);
- processor: VAD (or the client's `speech_probability` with `client_vad`) + segmenter per
  item, with silence for every media frame that never reached it (lost upstream or dropped
  by the intake); starts decodes on the engine without waiting for them and queues the
  stream's outputs, in order, in a bounded outbox;
- writer: takes outbox entries in order, awaits the ones still decoding, writes them.

A stream's decodes take a FIFO lock, so a stream has at most one decode on the engine at a
time; partials are only asked for when the engine is idle. Stale speculative decodes are
cancelled (those not yet started never run). Decodes waiting for their stream's turn are
counted in a `DecodeBacklog` shared by the servicer's streams: with the engine's `pending`,
the decode queue (`voicemesh_queue_depth{queue="decode"}`).

Media metrics: frames missing in the sequence are `voicemesh_media_frames_lost_total` and
every frame filled with silence `voicemesh_media_frames_concealed_total`, both under
transport "grpc" (the edge -> stt hop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from voicemesh.audio.frames import pcm16_to_float
from voicemesh.audio.vad import Vad
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.events import EventSink
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import audio_pb2, events_pb2, stt_pb2

from . import responses
from .config import StreamConfig
from .engine import DecodeResult, SpeechEngine
from .intake import Intake
from .media import SILENCE, Frame, FrameError, Timeline, check_frame
from .segmenter import (
    Decision,
    DecodeKind,
    DecodeRequest,
    Finalize,
    Segmenter,
    SpeechEnded,
    SpeechStarted,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MEDIA_LABEL = "grpc"  # the transport label of stt's media metrics: frames from the edge
Write = Callable[[stt_pb2.RecognizeResponse], Awaitable[None]]


class InvalidInput(Exception):
    """The client sent something this stream cannot take; ends it with INVALID_ARGUMENT."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class StreamLimits:
    max_queued_frames: int = 100  # 2 s of audio
    max_outbox: int = 64
    max_engine_backlog: int = 4  # speculative decodes are skipped beyond this many pending


@dataclass
class DecodeBacklog:
    """Decodes waiting for their stream's turn on the engine, over every stream of a servicer
    (a plain count: the metrics thread reads it at scrape time)."""

    waiting: int = 0


@dataclass(frozen=True)
class _Flush:
    flush_id: str
    received: float


class _End:
    pass


_END = _End()


@dataclass
class _Out:
    """One outbox entry: a ready response, or a task still producing one (None: nothing)."""

    response: stt_pb2.RecognizeResponse | None = None
    pending: asyncio.Task[stt_pb2.RecognizeResponse | None] | None = None
    on_sent: Callable[[stt_pb2.RecognizeResponse | None], None] | None = None


class RecognizeStream:
    def __init__(
        self,
        config: StreamConfig,
        *,
        engine: SpeechEngine,
        vad: Vad | None,
        metrics: ServiceMetrics,
        events: EventSink,
        tracer: trace.Tracer,
        trace_context: otel_context.Context | None = None,
        limits: StreamLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        backlog: DecodeBacklog | None = None,
    ) -> None:
        """`vad` judges the audio of a stream without `config.client_vad` (it is never used
        for one with it, and may be None then). `backlog` counts decodes waiting for their
        turn (the servicer shares one among its streams)."""
        if vad is None and not config.client_vad:
            raise ValueError("a stream without client_vad needs a VAD")
        self.config = config
        self._engine = engine
        self._vad = vad
        self._metrics = metrics
        self._events = events
        self._tracer = tracer
        self._trace_context = trace_context
        self._limits = limits or StreamLimits()
        self._clock = clock
        self._segmenter = Segmenter(config.segmenter)
        self._timeline = Timeline()  # the reader's: sequence -> media frame index
        self._next_index = 0  # the processor's: media frame index the segmenter is at
        self._intake: Intake[Frame, _Flush | _End] = Intake(self._limits.max_queued_frames)
        self._outbox: asyncio.Queue[_Out | None] = asyncio.Queue(self._limits.max_outbox)
        self._tag = uuid.uuid4().hex[:8]
        self._decode_lock = asyncio.Lock()  # FIFO: this stream's decodes run one at a time
        self._backlog = backlog if backlog is not None else DecodeBacklog()
        self._decoding = 0  # decode tasks not finished yet
        self._reusable: dict[int, asyncio.Task[DecodeResult | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spans: dict[int, trace.Span] = {}
        self._last_partial: tuple[int, str] = (-1, "")  # (utterance, text)

    def utterance_id(self, index: int) -> str:
        return f"{self._tag}-{index}"

    async def run(self, requests: AsyncIterator[stt_pb2.RecognizeRequest], write: Write) -> None:
        """Serve the stream until the client half-closes (after its finals are written).
        Raises InvalidInput on a bad request."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(requests), name="stt-read")
                tg.create_task(self._process(), name="stt-process")
                # The writer runs in the body, not as a child: on Python 3.11 a child failing
                # while the body already waits in __aexit__ leaves this task marked cancelled.
                await self._write(write)
        except ExceptionGroup as group:
            invalid = [e for e in group.exceptions if isinstance(e, InvalidInput)]
            if invalid:
                raise invalid[0] from None
            raise
        finally:
            await cancel_and_wait(*self._tasks)
            for span in self._spans.values():
                span.set_attribute("stt.abandoned", True)
                span.end()
            self._spans.clear()

    # -- reader ------------------------------------------------------------------------

    async def _read(self, requests: AsyncIterator[stt_pb2.RecognizeRequest]) -> None:
        async for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "audio":
                self._read_frame(request.audio)
                await asyncio.sleep(0)  # a burst of frames must not starve the processor
            elif kind == "flush":
                await self._intake.put_control(_Flush(request.flush.flush_id, self._clock()))
            elif kind == "config":
                raise InvalidInput("config may only be sent once, as the first request", "bad_request")
            else:
                raise InvalidInput("request carries none of config, audio, flush", "bad_request")
        await self._intake.put_control(_END)

    def _read_frame(self, audio: audio_pb2.AudioFrame) -> None:
        try:
            prob = check_frame(audio, self.config.client_vad)
        except FrameError as exc:
            raise InvalidInput(str(exc), "bad_frame") from None
        placement = self._timeline.place(audio.sequence)
        if placement is None:
            self._metrics.dropped("frame_out_of_order")
            return
        if placement.lost:
            self._metrics.dropped("frame_lost_upstream", placement.lost)
            self._metrics.frames_lost(MEDIA_LABEL, placement.lost)
        if placement.unfilled:
            log.warning(
                "sequence jumped too far to fill: media time falls behind",
                extra={
                    "session_id": self.config.session_id,
                    "lost_frames": placement.lost,
                    "unfilled_frames": placement.unfilled,
                },
            )
        if self._intake.put_frame(Frame(placement.index, audio.pcm, prob)):
            self._metrics.dropped("frame")  # its media frame is filled with silence

    # -- processor ---------------------------------------------------------------------

    async def _process(self) -> None:
        while True:
            item = await self._intake.get()
            decided_at = self._clock()
            if isinstance(item, Frame):
                # media frames that never came (lost upstream, dropped by the intake)
                missing = item.index - self._next_index
                if missing:
                    self._metrics.frames_concealed(MEDIA_LABEL, missing)
                for _ in range(missing):
                    await self._push(SILENCE, 0.0, decided_at)
                await self._push(item.pcm, self._speech_probability(item), decided_at)
                self._next_index = item.index + 1
                continue
            if isinstance(item, _Flush):
                decided_at = item.received
                decisions = self._segmenter.flush(item.flush_id)
            else:
                decisions = self._segmenter.finish()
            for decision in decisions:
                await self._act(decision, decided_at)
            if isinstance(item, _End):
                await self._outbox.put(None)
                return

    async def _push(self, pcm: bytes, prob: float, decided_at: float) -> None:
        idle = self._decoding == 0 and self._engine.pending == 0
        for decision in self._segmenter.push(pcm, prob, decoder_idle=idle):
            await self._act(decision, decided_at)

    def _speech_probability(self, frame: Frame) -> float:
        if frame.speech_probability is not None:
            return frame.speech_probability  # the client's (client_vad): no VAD of ours
        if self._vad is None:  # __init__ refuses this; check_frame gives client_vad frames one
            raise RuntimeError("no VAD for a stream without client_vad")
        return self._vad.process(frame.pcm)

    async def _act(self, decision: Decision, decided_at: float) -> None:
        if isinstance(decision, SpeechStarted):
            index = self._segmenter.utterance
            if index is not None:
                self._span(index)
            await self._outbox.put(
                _Out(responses.speech_event(stt_pb2.SpeechEvent.KIND_STARTED, decision.audio_ms))
            )
        elif isinstance(decision, SpeechEnded):
            await self._outbox.put(
                _Out(responses.speech_event(stt_pb2.SpeechEvent.KIND_ENDED, decision.audio_ms))
            )
        elif isinstance(decision, DecodeRequest):
            await self._request(decision)
        else:
            await self._finalize(decision, decided_at)

    async def _request(self, request: DecodeRequest) -> None:
        self._span(request.utterance)
        self._drop_reusable()  # a new request means new audio: older ones cannot be reused
        if request.kind is DecodeKind.SPECULATIVE:
            if self._engine.pending >= self._limits.max_engine_backlog:
                self._metrics.dropped("speculative_decode")
                return
            task = self._decode(request.audio, request.kind)
            self._reusable[request.request_id] = task
            if not self.config.segmenter.partials:
                return
        else:
            task = self._decode(request.audio, request.kind)
        # A speculative decode is also the best partial there is at a pause.
        await self._outbox.put(_Out(pending=self._spawn(self._partial(request, task))))

    async def _partial(
        self, request: DecodeRequest, task: asyncio.Task[DecodeResult | None]
    ) -> stt_pb2.RecognizeResponse | None:
        await asyncio.wait([task])  # a stale speculative decode may have been cancelled
        result = None if task.cancelled() else task.result()
        if result is None or not result.text:
            return None
        index, previous = self._last_partial
        if index != request.utterance:
            previous = ""
        if result.text == previous:
            return None
        self._last_partial = (request.utterance, result.text)
        return responses.transcript(
            utterance_id=self.utterance_id(request.utterance),
            result=result,
            final=False,
            audio_start_ms=request.audio_start_ms,
            audio_end_ms=request.audio_end_ms,
            stability=responses.stability(previous, result.text),
        )

    async def _finalize(self, final: Finalize, decided_at: float) -> None:
        task: asyncio.Task[DecodeResult | None] | None = None
        reused = final.reuse is not None and final.reuse in self._reusable
        if final.audio:
            if reused:
                task = self._reusable.pop(final.reuse)  # type: ignore[arg-type]
            else:
                task = self._decode(final.audio, DecodeKind.FINAL)
        self._drop_reusable()
        span = self._span(final.utterance)

        async def respond() -> stt_pb2.RecognizeResponse | None:
            result = await task if task is not None else None
            if final.flush_id is None and (result is None or not result.text):
                return None  # nothing heard, and nobody asked: no final
            return responses.transcript(
                utterance_id=self.utterance_id(final.utterance),
                result=result,
                final=True,
                audio_start_ms=final.audio_start_ms,
                audio_end_ms=final.audio_end_ms,
                flush_id=final.flush_id,
            )

        def sent(response: stt_pb2.RecognizeResponse | None) -> None:
            latency = self._clock() - decided_at
            text = response.transcript.text if response is not None else ""
            decode_ms = response.transcript.decode_ms if response is not None else 0
            if response is not None:
                self._metrics.observe_stage("stt_final", latency)
                self._events.emit(
                    self.config.session_id,
                    transcript=events_pb2.TranscriptPublished(
                        utterance_id=response.transcript.utterance_id,
                        text=text,
                        final=True,
                        decode_ms=decode_ms,
                    ),
                )
            span.set_attributes(
                {
                    "stt.final_reason": final.reason.value,
                    "stt.final_sent": response is not None,
                    "stt.reused_speculative": reused,
                    "stt.audio_ms": final.audio_end_ms - final.audio_start_ms,
                    "stt.text_chars": len(text),
                    "stt.decode_ms": decode_ms,
                    "stt.final_latency_ms": round(latency * 1000, 1),
                }
            )
            span.end()
            self._spans.pop(final.utterance, None)
            log.debug(
                "utterance finalized",
                extra={
                    "session_id": self.config.session_id,
                    "utterance": final.utterance,
                    "reason": final.reason.value,
                    "reused": reused,
                    "final_sent": response is not None,
                    "text_chars": len(text),
                    "latency_ms": round(latency * 1000, 1),
                },
            )

        await self._outbox.put(_Out(pending=self._spawn(respond()), on_sent=sent))

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _drop_reusable(self) -> None:
        for task in self._reusable.values():
            task.cancel()
        self._reusable.clear()

    def _decode(self, audio: bytes, kind: DecodeKind) -> asyncio.Task[DecodeResult | None]:
        samples = pcm16_to_float(audio)

        async def run() -> DecodeResult | None:
            try:
                async with self._engine_turn():
                    result = await self._engine.decode(samples, self.config.language)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.error("decode")
                log.warning(
                    "decode failed",
                    extra={
                        "session_id": self.config.session_id,
                        "kind": kind.value,
                        "error": type(exc).__name__,
                    },
                )
                return None
            self._metrics.observe_stage("stt_decode", result.decode_s)
            return result

        task = self._spawn(run())
        self._decoding += 1
        task.add_done_callback(self._decode_done)
        return task

    def _decode_done(self, _: asyncio.Task[DecodeResult | None]) -> None:
        self._decoding -= 1

    @contextlib.asynccontextmanager
    async def _engine_turn(self) -> AsyncIterator[None]:
        """This stream's turn on the engine (FIFO); counted in the backlog until it comes."""
        self._backlog.waiting += 1
        try:
            await self._decode_lock.acquire()
        finally:
            self._backlog.waiting -= 1
        try:
            yield
        finally:
            self._decode_lock.release()

    def _span(self, index: int) -> trace.Span:
        span = self._spans.get(index)
        if span is None:
            span = self._tracer.start_span(
                "stt.utterance",
                context=self._trace_context,
                attributes={
                    "voicemesh.session_id": self.config.session_id,
                    "stt.utterance_id": self.utterance_id(index),
                },
            )
            self._spans[index] = span
        return span

    # -- writer ------------------------------------------------------------------------

    async def _write(self, write: Write) -> None:
        while True:
            out = await self._outbox.get()
            if out is None:
                return
            response = out.response
            if out.pending is not None:
                response = await out.pending
            if response is not None:
                await write(response)
            if out.on_sent is not None:
                out.on_sent(response)
