"""SynthesisStream with a fake engine and no sockets: exact frame counts and cancel timing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.tts.output import OutputFormat
from voicemesh.tts.responses import ProtocolError, ResponseBook
from voicemesh.tts.stream import SynthesisStream
from voicemesh.v1 import tts_pb2

pytestmark = pytest.mark.unit


class Harness:
    def __init__(
        self, engine: Any, fmt: OutputFormat | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        self.engine = engine
        self.events = RecordingEvents()
        self.metrics = ServiceMetrics.create("tts")
        self.written: list[tts_pb2.SynthesizeResponse] = []
        self.changed = asyncio.Event()
        self.requests: asyncio.Queue[tts_pb2.SynthesizeRequest | None] = asyncio.Queue()
        self.stream = SynthesisStream(
            session_id="s1",
            voice=engine.voice(""),
            fmt=fmt or OutputFormat(),
            engine=engine,
            book=ResponseBook(),
            write=self._write,
            metrics=self.metrics,
            events=self.events,
            tracer=tracer or trace.NoOpTracer(),
            trace_context=trace.set_span_in_context(trace.INVALID_SPAN),
            clock=time.monotonic,
        )
        self.task: asyncio.Task[None] | None = None

    async def _write(self, response: tts_pb2.SynthesizeResponse) -> None:
        self.written.append(response)
        self.changed.set()

    async def _feed(self) -> AsyncIterator[tts_pb2.SynthesizeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def start(self) -> None:
        self.task = asyncio.create_task(self.stream.run(self._feed()))

    def send(self, **kind: Any) -> None:
        self.requests.put_nowait(tts_pb2.SynthesizeRequest(**kind))

    def text(self, rid: str, text: str) -> None:
        self.send(text=tts_pb2.TextDelta(response_id=rid, text=text))

    def end(self, rid: str) -> None:
        self.send(end=tts_pb2.EndOfText(response_id=rid))

    def cancel(self, rid: str) -> None:
        self.send(cancel=tts_pb2.CancelSynthesis(response_id=rid))

    async def wait_for(self, cond: Callable[[], bool], what: str, within_s: float = 10) -> None:
        """Poll `cond` until the deadline, waking early whenever something is written."""
        deadline = time.monotonic() + within_s
        while not cond():
            if self.task is not None and self.task.done():
                raise AssertionError(f"stream ended before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.01)

    def frames(self, rid: str) -> list[tts_pb2.SynthesizedAudio]:
        return [w.audio for w in self.written if w.HasField("audio") and w.audio.response_id == rid]

    def marks(self, rid: str) -> list[tuple[str, int, str]]:
        return [
            (w.mark.name, w.mark.audio_offset_ms, w.mark.text)
            for w in self.written
            if w.HasField("mark") and w.mark.response_id == rid
        ]

    def synthesized(self) -> dict[str, tts_pb2.SessionEvent]:
        return {
            e.speech_synthesized.response_id: e.speech_synthesized
            for e in self.events.events
            if e.HasField("speech_synthesized")
        }


async def test_frames_marks_and_event_of_a_response(tone_engine: Any) -> None:
    h = Harness(tone_engine(chunk_ms=510))
    h.start()
    h.text("r1", "One two three four five six. Seven")
    h.text("r1", " eight.")
    h.end("r1")
    h.requests.put_nowait(None)
    assert h.task is not None
    await asyncio.wait_for(h.task, 10)
    frames = h.frames("r1")
    # Two clauses of 510 ms -> 1020 ms -> 51 whole frames, no padding needed.
    assert len(frames) == 51 and all(len(f.frame.pcm) == 640 for f in frames)
    assert [f.frame.sequence for f in frames] == list(range(51))
    assert [f.frame.timestamp for f in frames] == [320 * i for i in range(51)]
    assert h.marks("r1") == [
        ("clause", 0, "One two three four five six."),
        ("clause", 510, "Seven eight."),
        ("end", 1020, ""),
    ]
    kinds = ["mark" if w.HasField("mark") else "audio" for w in h.written]
    assert kinds[0] == "mark" and kinds[-1] == "mark" and kinds[26] == "mark"
    event = h.synthesized()["r1"]
    assert event.audio_ms == 1020 and not event.cancelled
    count = h.metrics.registry.get_sample_value(
        "voicemesh_stage_latency_seconds_count", {"service": "tts", "stage": "tts_first_audio"}
    )
    assert count == 1
    clauses = h.metrics.registry.get_sample_value(
        "voicemesh_stage_latency_seconds_count", {"service": "tts", "stage": "tts_synthesis"}
    )
    assert clauses == 2


async def test_last_frame_is_zero_padded_and_sequence_continues(tone_engine: Any) -> None:
    h = Harness(tone_engine(chunk_ms=505))
    h.start()
    for rid in ("r1", "r2"):
        h.text(rid, "Hello.")
        h.end(rid)
    await h.wait_for(lambda: ("end", 520, "") in h.marks("r2"), "r2's end")
    r1, r2 = h.frames("r1"), h.frames("r2")
    assert len(r1) == len(r2) == 26  # 505 ms -> 25 whole frames + 1 padded
    assert r1[-1].frame.pcm[160:] == bytes(480)  # 5 ms of audio, 15 ms of zeros
    assert [f.frame.sequence for f in r1 + r2] == list(range(52))
    h.requests.put_nowait(None)
    await asyncio.wait_for(h.task, 10)  # type: ignore[arg-type]


async def test_resampled_output_has_the_right_length(tone_engine: Any) -> None:
    h = Harness(tone_engine(chunk_ms=500), fmt=OutputFormat(8000, 20))
    h.start()
    h.text("r1", "Hello.")
    h.end("r1")
    await h.wait_for(lambda: bool(h.marks("r1")) and h.marks("r1")[-1][0] == "end", "end")
    frames = h.frames("r1")
    assert len(frames) == 25 and all(len(f.frame.pcm) == 320 for f in frames)


async def test_no_frame_of_a_cancelled_response_after_the_cancel_is_read(tone_engine: Any) -> None:
    engine = tone_engine(chunk_ms=500, gated=True)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    h = Harness(engine, tracer=provider.get_tracer("test"))
    h.start()
    h.text("r1", "a first part | a second part | a third part")  # one clause, three chunks
    h.text("r1", ". And then another clause.")
    h.end("r1")
    await h.wait_for(lambda: len(h.frames("r1")) == 25, "the first chunk's frames")
    # The speaker now waits on the engine for the clause's second chunk.
    h.cancel("r1")
    await h.wait_for(lambda: "r1" in h.synthesized(), "the cancel being read")
    engine.release(10)  # the second clause's audio now exists; it must be dropped
    h.text("r2", "Next answer.")
    h.end("r2")
    await h.wait_for(lambda: ("end", 500, "") in h.marks("r2"), "r2's end")
    assert len(h.frames("r1")) == 25
    assert [m[0] for m in h.marks("r1")] == ["clause"]  # no "end" for a cancelled response
    event = h.synthesized()["r1"]
    assert event.cancelled and event.audio_ms == 500
    assert not h.synthesized()["r2"].cancelled
    assert engine.texts[-1] == "Next answer." and "And then another clause." not in engine.texts
    spans = {
        (s.attributes or {})["voicemesh.response_id"]: s.attributes
        for s in exporter.get_finished_spans()
        if s.name == "tts.response"
    }
    assert spans["r1"] is not None and spans["r1"]["voicemesh.cancelled"] is True
    assert spans["r2"] is not None and spans["r2"]["voicemesh.cancelled"] is False


async def test_cancel_is_handled_before_text_queued_ahead_of_it(tone_engine: Any) -> None:
    engine = tone_engine()
    h = Harness(engine)
    h.text("r1", " ".join(f"Sentence number {i} is here." for i in range(20)))
    h.end("r1")
    h.cancel("r1")
    h.text("r2", "Only this.")
    h.end("r2")
    h.requests.put_nowait(None)
    h.start()
    await asyncio.wait_for(h.task, 10)  # type: ignore[arg-type]
    assert engine.texts == ["Only this."]
    assert h.frames("r1") == [] and h.marks("r1") == []
    assert h.synthesized()["r1"].cancelled


async def test_cancel_all_with_an_empty_id(tone_engine: Any) -> None:
    h = Harness(tone_engine())
    for rid in ("r1", "r2"):
        h.text(rid, "Some words.")
    h.cancel("")
    h.requests.put_nowait(None)
    h.start()
    await asyncio.wait_for(h.task, 10)  # type: ignore[arg-type]
    assert {rid: e.cancelled for rid, e in h.synthesized().items()} == {"r1": True, "r2": True}
    assert h.written == []


async def test_an_engine_failure_skips_the_clause_and_the_response_still_ends(
    tone_engine: Any,
) -> None:
    h = Harness(tone_engine(chunk_ms=500))
    h.start()
    h.text("r1", "This one will FAIL now. This one works.")
    h.end("r1")
    await h.wait_for(lambda: any(m[0] == "end" for m in h.marks("r1")), "r1's end")
    assert h.marks("r1") == [("clause", 0, "This one works."), ("end", 500, "")]
    assert (
        h.metrics.registry.get_sample_value("voicemesh_errors_total", {"service": "tts", "kind": "engine"})
        == 1
    )


async def test_a_second_config_is_a_protocol_error(tone_engine: Any) -> None:
    h = Harness(tone_engine())
    h.send(config=tts_pb2.SynthesisConfig(session_id="s1"))
    h.start()
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(h.task, 10)  # type: ignore[arg-type]
    assert info.group_contains(ProtocolError, match="config may only be sent once")


async def test_spans_per_response_and_clause_carry_no_text(tone_engine: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    h = Harness(tone_engine(), tracer=provider.get_tracer("test"))
    h.text("r1", "Secret words here. More secret words.")
    h.end("r1")
    h.requests.put_nowait(None)
    h.start()
    await asyncio.wait_for(h.task, 10)  # type: ignore[arg-type]
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["tts.clause", "tts.clause", "tts.response"]
    response = next(s for s in spans if s.name == "tts.response")
    assert response.attributes is not None
    assert response.attributes["voicemesh.response_id"] == "r1"
    assert response.attributes["voicemesh.audio_ms"] == 1000
    assert all("secret" not in str(dict(s.attributes or {})).lower() for s in spans)
