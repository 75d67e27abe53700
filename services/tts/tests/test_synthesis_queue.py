"""`voicemesh_queue_depth{queue="synthesis"}`: the clauses every stream has waiting plus the one
each has on the engine, back to 0 however they end (spoken, cancelled, the stream broken).
SynthesisStream with the gated tone engine, no sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry import trace

from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.tts.output import OutputFormat
from voicemesh.tts.responses import ResponseBook
from voicemesh.tts.stream import SynthesisStream
from voicemesh.v1 import tts_pb2

pytestmark = pytest.mark.unit

# Three clauses; the first is two engine chunks ("|"), so a gated engine holds it after one.
THREE_CLAUSES = (
    "One two three | four. Five six seven eight nine ten. Eleven twelve thirteen fourteen fifteen sixteen."
)


class Stream:
    def __init__(self, engine: Any, metrics: ServiceMetrics) -> None:
        self.requests: asyncio.Queue[tts_pb2.SynthesizeRequest | None] = asyncio.Queue()
        self.written: list[tts_pb2.SynthesizeResponse] = []
        self.stream = SynthesisStream(
            session_id="s1",
            voice=engine.voice(""),
            fmt=OutputFormat(),
            engine=engine,
            book=ResponseBook(),
            write=self._write,
            metrics=metrics,
            events=RecordingEvents(),
            tracer=trace.NoOpTracer(),
            trace_context=trace.set_span_in_context(trace.INVALID_SPAN),
            clock=time.monotonic,
        )
        self.task = asyncio.create_task(self.stream.run(self._feed()))

    async def _write(self, response: tts_pb2.SynthesizeResponse) -> None:
        self.written.append(response)

    async def _feed(self) -> AsyncIterator[tts_pb2.SynthesizeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def say(self, rid: str, text: str) -> None:
        self.requests.put_nowait(
            tts_pb2.SynthesizeRequest(text=tts_pb2.TextDelta(response_id=rid, text=text))
        )
        self.requests.put_nowait(tts_pb2.SynthesizeRequest(end=tts_pb2.EndOfText(response_id=rid)))

    def cancel(self, rid: str) -> None:
        self.requests.put_nowait(tts_pb2.SynthesizeRequest(cancel=tts_pb2.CancelSynthesis(response_id=rid)))

    def frames(self) -> int:
        return sum(w.HasField("audio") for w in self.written)

    def ended(self, rid: str) -> bool:
        return any(
            w.HasField("mark") and w.mark.name == "end" and w.mark.response_id == rid for w in self.written
        )


def depth(metrics: ServiceMetrics) -> float:
    value = metrics.registry.get_sample_value(
        "voicemesh_queue_depth", {"service": "tts", "queue": "synthesis"}
    )
    return value or 0.0


async def until(condition: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


async def test_queued_and_running_clauses_of_every_stream_count_until_spoken(tone_engine: Any) -> None:
    engine = tone_engine(chunk_ms=40, gated=True)
    metrics = ServiceMetrics.create("tts")
    a, b = Stream(engine, metrics), Stream(engine, metrics)
    try:
        a.say("r1", THREE_CLAUSES)
        # a: its first clause is on the engine (held after its first chunk), two wait
        await until(lambda: a.frames() > 0 and depth(metrics) == 3, "a's three clauses")
        b.say("r1", "Hello there friend. See you soon my dear friend.")
        # b: its first clause waits for the engine's one worker, one more waits behind it
        await until(lambda: depth(metrics) == 5, "b's two clauses on top")
        engine.release(10)
        await until(lambda: a.ended("r1") and b.ended("r1"), "both responses spoken")
        assert depth(metrics) == 0
    finally:
        engine.release(10)
        for s in (a, b):
            s.requests.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(a.task, b.task), 10)
    assert depth(metrics) == 0


async def test_a_cancel_takes_the_response_out_of_the_queue(tone_engine: Any) -> None:
    engine = tone_engine(chunk_ms=40, gated=True)
    metrics = ServiceMetrics.create("tts")
    s = Stream(engine, metrics)
    s.say("r1", THREE_CLAUSES)
    # the first clause's first chunk is out: the engine holds its second one
    await until(lambda: s.frames() > 0 and depth(metrics) == 3, "three clauses, one on the engine")
    s.cancel("r1")
    # the waiting clauses go at once; the one on the engine when its chunk comes back
    await until(lambda: depth(metrics) == 1, "only the clause on the engine left")
    engine.release(10)
    await until(lambda: depth(metrics) == 0, "the engine's clause stopped")
    s.requests.put_nowait(None)
    await asyncio.wait_for(s.task, 10)
    assert not s.ended("r1")


async def test_a_broken_stream_gives_back_all_it_counted(tone_engine: Any) -> None:
    engine = tone_engine(chunk_ms=40, gated=True)
    metrics = ServiceMetrics.create("tts")
    s = Stream(engine, metrics)
    s.say("r1", THREE_CLAUSES)
    await until(lambda: depth(metrics) == 3, "three clauses")
    s.requests.put_nowait(tts_pb2.SynthesizeRequest())  # a request with no kind: a protocol error
    with pytest.raises(ExceptionGroup):
        await asyncio.wait_for(s.task, 10)
    engine.release(10)
    assert depth(metrics) == 0


async def test_a_stream_the_caller_drops_gives_back_all_it_counted(tone_engine: Any) -> None:
    engine = tone_engine(chunk_ms=40, gated=True)
    metrics = ServiceMetrics.create("tts")
    s = Stream(engine, metrics)
    s.say("r1", THREE_CLAUSES)
    await until(lambda: depth(metrics) == 3, "three clauses")
    s.task.cancel()  # grpc cancels the handler when the edge goes away
    with pytest.raises(asyncio.CancelledError):
        await s.task
    engine.release(10)
    assert depth(metrics) == 0
