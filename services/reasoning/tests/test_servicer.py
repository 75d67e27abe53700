"""Reasoning.Converse over a real grpc.aio server on port 0, with the demo agents."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voicemesh.agent import Agent
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.reasoning import (
    AgentAction,
    AgentCatalog,
    ConversationBackend,
    ReasoningServicer,
    ResponseItem,
    SessionInfo,
    TextChunk,
    default_backend_factory,
)
from voicemesh.v1 import reasoning_pb2, reasoning_pb2_grpc

pytestmark = pytest.mark.integration

AGENTS = Path(__file__).resolve().parents[3] / "agents"
NOON_WEDNESDAY = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)


class GatedBackend(ConversationBackend):
    """Greets at once; answers each turn with "Part one. " and then waits for `release`
    before "Part two." — so a test can cancel a response in the middle."""

    def __init__(self, agent: Agent, session: SessionInfo) -> None:
        super().__init__(agent, session)
        self.release = asyncio.Event()
        self.stopped = asyncio.Event()

    async def _greet(self, response_id: str) -> AsyncIterator[ResponseItem]:
        yield TextChunk("Hi.")

    async def _respond(self, response_id: str, text: str) -> AsyncIterator[ResponseItem]:
        """"Hang up ..." -> only a hang-up action; "Slow ..." -> nothing until `release`;
        "Stubborn ..." -> a backend that wrongly ignores being stopped."""
        try:
            if text.startswith("Hang up"):
                yield AgentAction("hangup", "the caller asked")
                return
            if text.startswith("Slow"):
                await self.release.wait()
            yield TextChunk("Part one. ")
            if text.startswith("Stubborn"):
                while not self.release.is_set():
                    with contextlib.suppress(asyncio.CancelledError):
                        await self.release.wait()
            await self.release.wait()
            yield TextChunk("Part two.")
        finally:
            self.stopped.set()


@dataclass
class Harness:
    stub: reasoning_pb2_grpc.ReasoningStub
    events: RecordingEvents
    metrics: ServiceMetrics
    spans: InMemorySpanExporter
    backends: list[ConversationBackend] = field(default_factory=list)

    def dropped(self, what: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "voicemesh_dropped_total", {"service": "reasoning", "what": what}
        )
        return value or 0.0

    def stage_count(self, stage: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "voicemesh_stage_latency_seconds_count", {"service": "reasoning", "stage": stage}
        )
        return value or 0.0

    def sessions(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "voicemesh_sessions_total", {"service": "reasoning", "outcome": outcome}
        )
        return value or 0.0

    def in_flight(self) -> float:
        value = self.metrics.registry.get_sample_value(
            "voicemesh_requests_in_flight", {"service": "reasoning"}
        )
        return value or 0.0

    def errors(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "voicemesh_errors_total", {"service": "reasoning", "kind": kind}
        )
        return value or 0.0


async def _serve(gated: bool, turn_backlog: int = 8) -> AsyncIterator[Harness]:
    metrics = ServiceMetrics.create("reasoning")
    events = RecordingEvents(service="reasoning")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    h = Harness(None, events, metrics, exporter)  # type: ignore[arg-type]

    def factory(agent: Agent, session: SessionInfo) -> ConversationBackend:
        backend = GatedBackend(agent, session) if gated else default_backend_factory(agent, session)
        h.backends.append(backend)
        return backend

    servicer = ReasoningServicer(
        AgentCatalog(AGENTS, "restaurant"),
        metrics,
        events,
        provider.get_tracer("test"),
        backend_factory=factory,
        wall_clock=lambda: NOON_WEDNESDAY,
        turn_backlog=turn_backlog,
    )
    server = grpc.aio.server()
    reasoning_pb2_grpc.add_ReasoningServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    h.stub = reasoning_pb2_grpc.ReasoningStub(channel)
    try:
        yield h
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async for h in _serve(gated=False):
        yield h


@pytest.fixture
async def gated_harness() -> AsyncIterator[Harness]:
    async for h in _serve(gated=True, turn_backlog=2):
        yield h


def start(session_id: str = "s1", agent: str = "restaurant") -> reasoning_pb2.ConverseRequest:
    return reasoning_pb2.ConverseRequest(
        start=reasoning_pb2.SessionStart(session_id=session_id, agent=agent, metadata={"transport": "test"})
    )


def turn(turn_id: str, text: str) -> reasoning_pb2.ConverseRequest:
    return reasoning_pb2.ConverseRequest(turn=reasoning_pb2.UserTurn(turn_id=turn_id, text=text))


@dataclass
class Response:
    response_id: str
    in_reply_to: str
    deltas: list[str]
    text: str
    action: reasoning_pb2.Action | None = None


async def read(call: grpc.aio.StreamStreamCall) -> reasoning_pb2.ConverseResponse:
    msg = await asyncio.wait_for(call.read(), timeout=10)
    assert msg is not grpc.aio.EOF, "stream ended early"
    return msg


async def read_response(call: grpc.aio.StreamStreamCall, action: bool = False) -> Response:
    deltas: list[str] = []
    ids: set[tuple[str, str]] = set()
    while True:
        msg = await read(call)
        kind = msg.WhichOneof("kind")
        if kind == "delta":
            deltas.append(msg.delta.text)
            ids.add((msg.delta.response_id, msg.delta.in_reply_to))
            continue
        assert kind == "end", kind
        rid, in_reply_to = msg.end.response_id, msg.end.in_reply_to
        assert ids <= {(rid, in_reply_to)}, (ids, rid, in_reply_to)
        response = Response(rid, in_reply_to, deltas, msg.end.text)
        if action:
            nxt = await read(call)
            assert nxt.WhichOneof("kind") == "action"
            response.action = nxt.action
        return response


async def greeted(harness: Harness) -> grpc.aio.StreamStreamCall:
    """A started session whose ready and greeting have been read."""
    call = harness.stub.Converse()
    await call.write(start())
    await read(call)
    await read_response(call)
    return call


async def test_a_whole_booking(harness: Harness) -> None:
    call = harness.stub.Converse()
    await call.write(start())
    ready = await read(call)
    profile = ready.ready.agent
    assert (profile.name, profile.voice, profile.language) == ("Bella Vista", "en_US-joe-medium", "en")
    assert (profile.endpoint_silence_ms, profile.allow_barge_in, profile.idle_timeout_ms) == (
        500,
        True,
        15000,
    )
    assert profile.HasField("smart_turn")
    assert (profile.smart_turn.enabled, profile.smart_turn.check_after_ms) == (False, 200)
    assert profile.smart_turn.min_probability == pytest.approx(0.8)
    assert not profile.HasField("filler")  # off unless the agent file asks for it

    greeting = await read_response(call)
    assert greeting.in_reply_to == ""
    assert greeting.text == "".join(greeting.deltas)
    assert len(greeting.deltas) > 3, "the greeting streams in small pieces"
    assert greeting.deltas[0] == "Hello, "
    assert greeting.text.endswith("How many people will be joining?")

    script = [
        ("t1", " Four people, please.", "What day would you like to come?"),
        ("t2", " Tomorrow at 7.30 p.m.", "And what name should I put the booking under?"),
        (
            "t3",
            " My name is Alice.",
            "So that's a table for four, tomorrow at 7:30 PM, under the name Alice. Shall I book it?",
        ),
    ]
    for turn_id, text, expected in script:
        await call.write(turn(turn_id, text))
        reply = await read_response(call)
        assert (reply.in_reply_to, reply.text) == (turn_id, expected)

    await call.write(turn("t4", "Yes, please."))
    booked = await read_response(call, action=True)
    assert booked.text == "Your table is booked. Thank you for calling Bella Vista, goodbye!"
    assert booked.action is not None and booked.action.WhichOneof("kind") == "hangup"
    assert booked.action.response_id == booked.response_id

    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=10) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK

    published = [e.response for e in harness.events.events if e.WhichOneof("payload") == "response"]
    assert [p.in_reply_to for p in published] == ["", "t1", "t2", "t3", "t4"]
    assert all(e.session_id == "s1" for e in harness.events.events)
    assert published[-1].text == booked.text and not published[-1].cancelled
    assert harness.stage_count("first_token") == 5
    assert harness.stage_count("response") == 5
    spans = [s for s in harness.spans.get_finished_spans() if s.name == "reasoning.response"]
    assert [s.attributes["voicemesh.in_reply_to"] for s in spans] == ["", "t1", "t2", "t3", "t4"]


async def test_unknown_agent_is_not_found(harness: Harness) -> None:
    call = harness.stub.Converse()
    await call.write(start(agent="pizzeria"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "pizzeria" in (info.value.details() or "")
    assert "restaurant" in (info.value.details() or "")
    assert harness.errors("unknown_agent") == 1


async def test_empty_agent_id_means_the_default_agent(harness: Harness) -> None:
    call = harness.stub.Converse()
    await call.write(start(agent=""))
    assert (await read(call)).ready.agent.name == "Bella Vista"
    await call.done_writing()


async def test_first_message_must_be_start(harness: Harness) -> None:
    call = harness.stub.Converse()
    await call.write(turn("t1", "hello"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "start" in (info.value.details() or "")
    assert harness.errors("bad_first_message") == 1
    # The service keeps serving other streams.
    other = harness.stub.Converse()
    await other.write(start("s2"))
    assert (await read(other)).WhichOneof("kind") == "ready"
    await other.done_writing()


async def test_session_id_must_be_a_token(harness: Harness) -> None:
    call = harness.stub.Converse()
    await call.write(start(session_id="a.b"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session_id" in (info.value.details() or "")


async def test_a_second_start_is_refused(harness: Harness) -> None:
    call = await greeted(harness)
    await call.write(start())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_after_playout_started_keeps_what_was_heard(harness: Harness) -> None:
    """The usual barge-in: the rule engine's reply is complete, the caller interrupts its
    playout; the history keeps only what they heard."""
    call = harness.stub.Converse()
    await call.write(start())
    await read(call)
    greeting = await read_response(call)
    heard = "Hello, thanks for calling"
    await call.write(
        reasoning_pb2.ConverseRequest(
            cancel=reasoning_pb2.CancelResponse(response_id=greeting.response_id, heard_text=heard)
        )
    )
    await call.write(turn("t1", "Two people."))
    reply = await read_response(call)
    assert reply.text == "What day would you like to come?"
    history = harness.backends[0].history.messages
    assert [(m.role, m.text, m.interrupted) for m in history] == [
        ("assistant", heard, True),
        ("user", "Two people.", False),
        ("assistant", reply.text, False),
    ]
    await call.done_writing()


async def test_cancel_mid_response_stops_it(gated_harness: Harness) -> None:
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t1", "Tell me everything."))
    first = await read(call)
    assert first.delta.text == "Part one. " and first.delta.in_reply_to == "t1"
    rid = first.delta.response_id
    await call.write(
        reasoning_pb2.ConverseRequest(cancel=reasoning_pb2.CancelResponse(response_id=rid, heard_text="Part"))
    )
    backend = harness.backends[0]
    await asyncio.wait_for(backend.stopped.wait(), timeout=10)  # the backend was stopped

    # The stream carries on: the next turn is answered; r2 got no end.
    backend.stopped.clear()
    await call.write(turn("t2", "Again."))
    nxt = await read(call)
    assert nxt.WhichOneof("kind") == "delta" and nxt.delta.in_reply_to == "t2"
    assert nxt.delta.response_id != rid
    backend.release.set()
    second = await read(call)
    assert second.delta.text == "Part two."
    end = await read(call)
    assert end.end.text == "Part one. Part two."

    published = {
        e.response.response_id: e.response
        for e in harness.events.events
        if e.WhichOneof("payload") == "response"
    }
    assert published[rid].cancelled and published[rid].text == "Part one. "
    assert [(m.role, m.text, m.interrupted) for m in backend.history.messages] == [
        ("assistant", "Hi.", False),
        ("user", "Tell me everything.", False),
        ("assistant", "Part", True),
        ("user", "Again.", False),
        ("assistant", "Part one. Part two.", False),
    ]
    spans = {s.attributes["voicemesh.response_id"]: s for s in harness.spans.get_finished_spans()}
    assert spans[rid].attributes["voicemesh.cancelled"] is True
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=10) is grpc.aio.EOF


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_caller_hanging_up_mid_response_ends_the_session(gated_harness: Harness) -> None:
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t1", "Tell me everything."))
    assert (await read(call)).delta.text == "Part one. "
    call.cancel()
    backend = harness.backends[0]
    await asyncio.wait_for(backend.stopped.wait(), timeout=10)
    await wait_for(lambda: harness.sessions("cancelled") == 1)
    # ... and the service still serves.
    other = harness.stub.Converse()
    await other.write(start("s2"))
    assert (await read(other)).WhichOneof("kind") == "ready"
    await other.done_writing()


async def test_too_many_waiting_turns_are_refused(gated_harness: Harness) -> None:
    """Turns queue while a backend that will not stop holds the writer; past the backlog
    (2 here) the peer is told instead of the queue growing."""
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t1", "Stubborn."))
    await read(call)  # t1 is being answered (and ignores the preemption below)
    for n in range(2, 5):
        await call.write(turn(f"t{n}", "More."))
    await wait_for(lambda: harness.errors("turn_backlog") == 1)
    harness.backends[0].release.set()  # type: ignore[attr-defined]  # lets the stream end
    with pytest.raises(grpc.aio.AioRpcError) as info:
        while True:
            await read(call)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_new_turn_preempts_the_one_being_answered(gated_harness: Harness) -> None:
    """The caller speaks again while the answer to t1 is still being generated: that answer
    stops and ends as preempted, with what was sent, and t2 is answered at once."""
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t1", "Tell me everything."))
    first = await read(call)
    assert first.delta.text == "Part one. "
    await call.write(turn("t2", "Actually, the hours."))
    end = await read(call)
    assert end.WhichOneof("kind") == "end"
    assert (end.end.response_id, end.end.in_reply_to) == (first.delta.response_id, "t1")
    assert end.end.preempted and end.end.text == "Part one. "
    nxt = await read(call)
    assert nxt.delta.in_reply_to == "t2"
    harness.backends[0].release.set()  # type: ignore[attr-defined]
    assert (await read(call)).delta.text == "Part two."
    done = await read(call)
    assert done.end.text == "Part one. Part two." and not done.end.preempted
    assert [(m.role, m.text, m.interrupted) for m in harness.backends[0].history.messages] == [
        ("assistant", "Hi.", False),
        ("user", "Tell me everything.", False),
        ("assistant", "Part one.", True),
        ("user", "Actually, the hours.", False),
        ("assistant", "Part one. Part two.", False),
    ]
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=10) is grpc.aio.EOF


async def test_a_turn_is_cancelled_by_its_id_before_its_first_delta(gated_harness: Harness) -> None:
    """The edge knows only the turn it superseded: naming it stops the answer that had not
    produced a word yet, and nothing of it ever arrives."""
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t1", "Slow question."))
    await wait_for(lambda: harness.in_flight() == 1)  # t1 is being answered, no word yet
    backend_stopped = harness.backends[0].stopped  # type: ignore[attr-defined]
    cancel = reasoning_pb2.CancelResponse(turn_id="t1")
    await call.write(reasoning_pb2.ConverseRequest(cancel=cancel))
    await asyncio.wait_for(backend_stopped.wait(), timeout=10)
    harness.backends[0].release.set()  # type: ignore[attr-defined]
    await call.write(turn("t2", "Next."))
    reply = await read_response(call)
    assert reply.in_reply_to == "t2" and reply.text == "Part one. Part two."
    assert [m.text for m in harness.backends[0].history.messages if m.role == "user"] == [
        "Slow question.",
        "Next.",
    ]
    await call.done_writing()


async def test_a_queued_turn_cancelled_by_its_id_is_never_answered(gated_harness: Harness) -> None:
    """The writer is still busy with an answer slow to stop when the caller's next turn
    and its cancel arrive: the queued turn is dropped unanswered (and counted), and the
    turn after it is answered."""
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t0", "Stubborn answer."))
    assert (await read(call)).delta.in_reply_to == "t0"
    await call.write(turn("t1", "Superseded."))
    await call.write(reasoning_pb2.ConverseRequest(cancel=reasoning_pb2.CancelResponse(turn_id="t1")))
    await wait_for(lambda: harness.dropped("cancelled_turn") == 1)
    harness.backends[0].release.set()  # type: ignore[attr-defined]
    await call.write(turn("t2", "Next."))
    stopped = await read(call)
    assert stopped.end.in_reply_to == "t0" and stopped.end.preempted
    reply = await read_response(call)
    assert (reply.in_reply_to, reply.text) == ("t2", "Part one. Part two.")
    user_turns = [m.text for m in harness.backends[0].history.messages if m.role == "user"]
    assert user_turns == ["Stubborn answer.", "Next."]
    await call.done_writing()


async def test_an_action_only_reply_still_ends(gated_harness: Harness) -> None:
    """A reply with no words (only a hang-up) ends like any other, so the edge knows the
    agent is done instead of waiting for text that never comes."""
    harness = gated_harness
    call = await greeted(harness)
    await call.write(turn("t1", "Hang up please."))
    reply = await read_response(call, action=True)
    assert (reply.in_reply_to, reply.text, reply.deltas) == ("t1", "", [])
    assert reply.action.hangup.reason == "the caller asked"
    await call.done_writing()


def dtmf(turn_id: str, digits: str) -> reasoning_pb2.ConverseRequest:
    return reasoning_pb2.ConverseRequest(dtmf=reasoning_pb2.CallerDtmf(turn_id=turn_id, digits=digits))


async def test_keys_pressed_are_answered_like_a_turn(harness: Harness) -> None:
    """Asked for the party size, the caller presses 4: the agent moves on to the day."""
    call = harness.stub.Converse()
    await call.write(start())
    await read(call)
    greeting = await read_response(call)
    assert greeting.text.endswith("How many people will be joining?")
    await call.write(dtmf("k1", "4"))
    reply = await read_response(call)
    assert (reply.in_reply_to, reply.text) == ("k1", "What day would you like to come?")
    await call.write(turn("t2", "Tomorrow at 7.30 p.m."))
    booking = await read_response(call)
    assert booking.text == "And what name should I put the booking under?"
    history = harness.backends[0].history.messages
    assert [(m.role, m.text) for m in history][1:3] == [("user", "4"), ("assistant", reply.text)]
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), timeout=10) is grpc.aio.EOF
    published = [e.response for e in harness.events.events if e.WhichOneof("payload") == "response"]
    assert [p.in_reply_to for p in published] == ["", "k1", "t2"]


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "a", "1" * 33])
async def test_keys_that_are_not_dtmf_are_refused(harness: Harness, digits: str) -> None:
    call = await greeted(harness)
    await call.write(dtmf("k1", digits))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dtmf.digits" in (info.value.details() or "")
    assert harness.errors("bad_dtmf") == 1


async def test_every_key_is_accepted(harness: Harness) -> None:
    call = await greeted(harness)
    await call.write(dtmf("k1", "0123456789*#ABCD" * 2))
    reply = await read_response(call)
    assert reply.in_reply_to == "k1"
    await call.done_writing()


async def test_an_empty_request_names_every_kind(harness: Harness) -> None:
    call = await greeted(harness)
    await call.write(reasoning_pb2.ConverseRequest())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "start, turn, cancel, dtmf" in (info.value.details() or "")
