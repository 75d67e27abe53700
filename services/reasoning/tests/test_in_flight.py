"""`voicemesh_requests_in_flight` over a real grpc.aio server on port 0: a response counts
while it is generated and stops counting however it ends — complete, cancelled by a
barge-in, the backend failing, or the caller hanging up mid-response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from opentelemetry.trace import NoOpTracer

from voicemesh.agent import Agent
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.reasoning import (
    AgentCatalog,
    ConversationBackend,
    ReasoningServicer,
    ResponseItem,
    SessionInfo,
    TextChunk,
)
from voicemesh.v1 import reasoning_pb2, reasoning_pb2_grpc

pytestmark = pytest.mark.integration

AGENTS = Path(__file__).resolve().parents[3] / "agents"


class HeldBackend(ConversationBackend):
    """Greets at once; each answer says "Part one." then waits for `release` (or fails, for a
    turn saying "fail")."""

    def __init__(self, agent: Agent, session: SessionInfo) -> None:
        super().__init__(agent, session)
        self.release = asyncio.Event()

    async def _greet(self, response_id: str) -> AsyncIterator[ResponseItem]:
        yield TextChunk("Hi.")

    async def _respond(self, response_id: str, text: str) -> AsyncIterator[ResponseItem]:
        yield TextChunk("Part one. ")
        await self.release.wait()
        if text == "fail":
            raise RuntimeError("backend broke")
        yield TextChunk("Part two.")


class Harness:
    def __init__(self) -> None:
        self.metrics = ServiceMetrics.create("reasoning")
        self.backends: list[HeldBackend] = []

    def factory(self, agent: Agent, session: SessionInfo) -> ConversationBackend:
        self.backends.append(HeldBackend(agent, session))
        return self.backends[-1]

    def in_flight(self) -> float:
        value = self.metrics.registry.get_sample_value(
            "voicemesh_requests_in_flight", {"service": "reasoning"}
        )
        return value or 0.0


@pytest.fixture
async def served() -> AsyncIterator[tuple[Harness, reasoning_pb2_grpc.ReasoningStub]]:
    h = Harness()
    servicer = ReasoningServicer(
        AgentCatalog(AGENTS, "restaurant"),
        h.metrics,
        RecordingEvents(service="reasoning"),
        NoOpTracer(),
        backend_factory=h.factory,
    )
    server = grpc.aio.server()
    reasoning_pb2_grpc.add_ReasoningServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield h, reasoning_pb2_grpc.ReasoningStub(channel)
    finally:
        await channel.close()
        await server.stop(None)


async def until(condition: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def read_until(call: grpc.aio.StreamStreamCall, kind: str) -> reasoning_pb2.ConverseResponse:
    while True:
        msg = await asyncio.wait_for(call.read(), 10)
        assert msg is not grpc.aio.EOF, f"stream ended before {kind}"
        if msg.WhichOneof("kind") == kind:
            return msg


async def started(stub: reasoning_pb2_grpc.ReasoningStub) -> grpc.aio.StreamStreamCall:
    """A session past its greeting."""
    call = stub.Converse()
    await call.write(reasoning_pb2.ConverseRequest(start=reasoning_pb2.SessionStart(session_id="s1")))
    await read_until(call, "end")
    return call


async def turn(call: grpc.aio.StreamStreamCall, text: str) -> str:
    """Say `text`; returns the id of the response, once its first delta is back."""
    await call.write(reasoning_pb2.ConverseRequest(turn=reasoning_pb2.UserTurn(turn_id="t1", text=text)))
    return (await read_until(call, "delta")).delta.response_id


async def test_a_response_counts_until_it_is_complete(
    served: tuple[Harness, reasoning_pb2_grpc.ReasoningStub],
) -> None:
    h, stub = served
    call = await started(stub)
    await until(lambda: h.in_flight() == 0, "the greeting done")
    await turn(call, "Tell me.")
    assert h.in_flight() == 1
    h.backends[0].release.set()
    await read_until(call, "end")
    await until(lambda: h.in_flight() == 0, "the response done")
    await call.done_writing()


async def test_a_cancelled_response_leaves_no_request_in_flight(
    served: tuple[Harness, reasoning_pb2_grpc.ReasoningStub],
) -> None:
    h, stub = served
    call = await started(stub)
    rid = await turn(call, "Tell me.")
    assert h.in_flight() == 1
    cancel = reasoning_pb2.CancelResponse(response_id=rid, heard_text="Part")
    await call.write(reasoning_pb2.ConverseRequest(cancel=cancel))
    await until(lambda: h.in_flight() == 0, "the cancel taken")
    await call.done_writing()


async def test_a_failed_response_leaves_no_request_in_flight(
    served: tuple[Harness, reasoning_pb2_grpc.ReasoningStub],
) -> None:
    h, stub = served
    call = await started(stub)
    await turn(call, "fail")
    h.backends[0].release.set()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await read_until(call, "end")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert h.in_flight() == 0


async def test_a_caller_hanging_up_mid_response_leaves_no_request_in_flight(
    served: tuple[Harness, reasoning_pb2_grpc.ReasoningStub],
) -> None:
    h, stub = served
    call = await started(stub)
    await turn(call, "Tell me.")
    assert h.in_flight() == 1
    call.cancel()
    await until(lambda: h.in_flight() == 0, "the server seeing the caller gone")
