"""One `Synthesize` stream once its config is accepted: a reader and a speaker task.

The reader applies every request to the `ResponseBook` as soon as it arrives, so a cancel
takes effect at once, ahead of text queued before it. The speaker takes the oldest open
response's clauses in order, synthesizes each on the engine's worker thread, resamples to
the requested rate, cuts 20 ms frames and writes them. It checks the response's cancelled
flag after every engine chunk and before every frame: once a cancel is read, no frame of
that response is written and it gets no "end" mark.

Frames: `sequence` counts frames on this stream from 0 and `timestamp` counts samples at the
output rate, both gapless across responses (a response's frames follow the previous
response's). Marks: "clause" before a clause's first frame, with its text and its offset in
the response's audio; "end" after a response's last frame (zero-padded to a whole frame),
its offset being the response's whole audio length.

Load: `voicemesh_queue_depth{queue="synthesis"}` counts this stream's synthesis jobs, the
clauses queued in its responses plus the one on the engine (running, or waiting for the
engine's worker). The stream keeps its share of the gauge in step after every change and
takes all of it back when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace

from voicemesh.audio.frames import Framer
from voicemesh.audio.resample import StreamResampler
from voicemesh.mesh.events import EventSink
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import audio_pb2, events_pb2, tts_pb2

from .engine import SpeechEngine, Voice
from .output import OutputFormat
from .responses import Clause, ProtocolError, Response, ResponseBook

log = logging.getLogger(__name__)

QUEUE = "synthesis"
Write = Callable[[tts_pb2.SynthesizeResponse], Awaitable[None]]


@dataclass
class _Playback:
    """Per-response audio state of the response being spoken."""

    response: Response
    resampler: StreamResampler
    framer: Framer
    voice_samples: int = 0


class SynthesisStream:
    def __init__(
        self,
        session_id: str,
        voice: Voice,
        fmt: OutputFormat,
        engine: SpeechEngine,
        book: ResponseBook,
        write: Write,
        metrics: ServiceMetrics,
        events: EventSink,
        tracer: trace.Tracer,
        trace_context: otel_context.Context,
        clock: Callable[[], float],
    ) -> None:
        self.session_id = session_id
        self.voice = voice
        self.fmt = fmt
        self._engine = engine
        self._book = book
        self._write = write
        self._metrics = metrics
        self._events = events
        self._tracer = tracer
        self._trace_context = trace_context
        self._clock = clock
        self._changed = asyncio.Event()
        self._sequence = 0
        self._speaking = False  # a clause is on the engine
        self._jobs_reported = 0  # this stream's share of the synthesis queue gauge

    async def run(self, requests: AsyncIterator[tts_pb2.SynthesizeRequest]) -> None:
        """Serve until the client has closed its side and every response is spoken.

        Raises ProtocolError / LimitExceeded (in an ExceptionGroup) on a client's mistake."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(requests), name="tts-reader")
                tasks.create_task(self._speak(), name="tts-speaker")
        finally:
            for response in self._book.cancel(""):  # whatever was left when the stream broke
                self._report(response)
            self._metrics.queue_changed(QUEUE, -self._jobs_reported)
            self._jobs_reported = 0

    def _sync_queue(self) -> None:
        """Bring this stream's share of the synthesis queue gauge up to date."""
        jobs = sum(len(r.clauses) for r in self._book.open_responses()) + (1 if self._speaking else 0)
        if jobs != self._jobs_reported:
            self._metrics.queue_changed(QUEUE, jobs - self._jobs_reported)
            self._jobs_reported = jobs

    # --- reader ----------------------------------------------------------------------------

    async def _read(self, requests: AsyncIterator[tts_pb2.SynthesizeRequest]) -> None:
        async for request in requests:
            self.apply(request)
        self._book.close_input()
        self._changed.set()

    def apply(self, request: tts_pb2.SynthesizeRequest) -> None:
        kind = request.WhichOneof("kind")
        if kind == "text":
            self._book.add_text(request.text.response_id, request.text.text, self._clock())
        elif kind == "end":
            self._book.end_text(request.end.response_id, self._clock())
        elif kind == "cancel":
            for response in self._book.cancel(request.cancel.response_id):
                self._report(response)
        elif kind == "config":
            raise ProtocolError("config may only be sent once, as the first request")
        else:
            raise ProtocolError("request has no kind set (text, end or cancel)")
        self._sync_queue()
        self._changed.set()

    # --- speaker ---------------------------------------------------------------------------

    async def _speak(self) -> None:
        playback: _Playback | None = None
        span: trace.Span | None = None
        try:
            while True:
                if (
                    playback is not None
                    and span is not None
                    and (playback.response.cancelled or playback.response.finished)
                ):
                    self._end_span(span, playback.response)
                    playback = span = None
                step = self._book.next_step()
                if step is None:
                    if self._book.done:
                        return
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                if playback is None or playback.response is not step.response:
                    playback = self._start(step.response)
                    span = self._tracer.start_span(
                        "tts.response",
                        context=self._trace_context,
                        attributes={"voicemesh.response_id": step.response.response_id},
                    )
                assert span is not None
                if isinstance(step, Clause):
                    self._speaking = True
                    self._sync_queue()
                    try:
                        await self._speak_clause(playback, step.text, span)
                    finally:
                        self._speaking = False
                        self._sync_queue()
                else:
                    await self._finish(playback)
        finally:
            if playback is not None and span is not None:
                self._end_span(span, playback.response)

    def _end_span(self, span: trace.Span, response: Response) -> None:
        span.set_attribute("voicemesh.audio_ms", response.frames_sent * self.fmt.frame_ms)
        span.set_attribute("voicemesh.cancelled", response.cancelled)
        span.end()

    def _start(self, response: Response) -> _Playback:
        response.started = True
        return _Playback(
            response,
            StreamResampler(self.voice.sample_rate, self.fmt.sample_rate),
            Framer(self.fmt.frame_bytes),
        )

    async def _speak_clause(self, playback: _Playback, text: str, span: trace.Span) -> None:
        response = playback.response
        offset_ms = playback.voice_samples * 1000 // self.voice.sample_rate
        with self._tracer.start_as_current_span(
            "tts.clause",
            context=trace.set_span_in_context(span),
            attributes={"voicemesh.chars": len(text)},
        ) as clause_span:
            engine_s = 0.0
            marked = False
            chunks = self._engine.stream(text, self.voice.voice_id)
            try:
                while True:
                    started = self._clock()
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:  # the engine failed on this clause: skip it
                        self._metrics.error("engine")
                        clause_span.record_exception(exc)
                        log.exception(
                            "tts clause failed",
                            extra={
                                "session_id": self.session_id,
                                "response_id": response.response_id,
                                "chars": len(text),
                            },
                        )
                        return
                    engine_s += self._clock() - started
                    if response.cancelled:
                        return
                    if not marked:
                        await self._send_mark(response, "clause", offset_ms, text)
                        marked = True
                    playback.voice_samples += len(chunk) // 2
                    if not await self._send_pcm(playback, playback.resampler.process(chunk)):
                        return
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
            self._metrics.observe_stage("tts_synthesis", engine_s)

    async def _finish(self, playback: _Playback) -> None:
        response = playback.response
        if not await self._send_pcm(playback, playback.resampler.flush()):
            return
        tail = playback.framer.flush(pad=True)
        if tail is not None and not await self._send_frames(playback, [tail]):
            return
        await self._send_mark(response, "end", response.frames_sent * self.fmt.frame_ms, "")
        self._book.finish(response)
        self._report(response)

    async def _send_pcm(self, playback: _Playback, pcm: bytes) -> bool:
        return await self._send_frames(playback, playback.framer.push(pcm))

    async def _send_frames(self, playback: _Playback, frames: list[bytes]) -> bool:
        """Write frames unless the response is cancelled; False once it is."""
        response = playback.response
        for pcm in frames:
            if response.cancelled:
                return False
            frame = audio_pb2.AudioFrame(
                sequence=self._sequence, timestamp=self._sequence * self.fmt.frame_samples, pcm=pcm
            )
            # Counted before the write: a cancel read while it is in flight still counts it.
            self._sequence += 1
            response.frames_sent += 1
            if response.first_audio_at is None:
                response.first_audio_at = self._clock()
                self._metrics.observe_stage(
                    "tts_first_audio", response.first_audio_at - response.first_text_at
                )
            await self._write(
                tts_pb2.SynthesizeResponse(
                    audio=tts_pb2.SynthesizedAudio(response_id=response.response_id, frame=frame)
                )
            )
        return not response.cancelled

    async def _send_mark(self, response: Response, name: str, offset_ms: int, text: str) -> None:
        await self._write(
            tts_pb2.SynthesizeResponse(
                mark=tts_pb2.SynthesisMark(
                    response_id=response.response_id,
                    name=name,
                    audio_offset_ms=offset_ms,
                    text=text,
                )
            )
        )

    def _report(self, response: Response) -> None:
        first_audio_ms = 0
        if response.first_audio_at is not None:
            first_audio_ms = round((response.first_audio_at - response.first_text_at) * 1000)
        self._events.emit(
            self.session_id,
            speech_synthesized=events_pb2.SpeechSynthesized(
                response_id=response.response_id,
                audio_ms=response.frames_sent * self.fmt.frame_ms,
                first_audio_ms=max(0, first_audio_ms),
                cancelled=response.cancelled,
            ),
        )
