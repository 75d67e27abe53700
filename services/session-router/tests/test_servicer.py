"""SessionRouter over a real grpc.aio server on port 0, backed by a real valkey-server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry.trace import NoOpTracer

from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry, redis_from_url
from voicemesh.router.servicer import RouterServicer
from voicemesh.v1 import router_pb2, router_pb2_grpc

pytestmark = pytest.mark.integration


@dataclass
class Router:
    stub: router_pb2_grpc.SessionRouterStub
    registry: InstanceRegistry
    events: RecordingEvents
    metrics: ServiceMetrics

    async def assign(self, sid: str, region: str, *services: str) -> dict[str, str]:
        reply = await self.stub.Assign(
            router_pb2.AssignRequest(session_id=sid, region=region, services=services)
        )
        return {a.service: a.instance_id for a in reply.assignments}

    async def active(self) -> dict[str, int]:
        return {s.info.instance_id: s.active for s in await self.registry.instances()}

    async def add(self, service: str, iid: str, region: str = "eu", capacity: int = 10) -> None:
        await self.registry.register(InstanceInfo(service, iid, f"{iid}:50051", region, capacity))


async def _serve(redis: aioredis.Redis) -> AsyncIterator[Router]:
    metrics = ServiceMetrics.create("session-router")
    events = RecordingEvents(service="session-router")
    servicer = RouterServicer(redis, metrics, events, NoOpTracer())
    await servicer.start()
    server = grpc.aio.server()
    router_pb2_grpc.add_SessionRouterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Router(
            router_pb2_grpc.SessionRouterStub(channel),
            InstanceRegistry(redis, ttl_s=60),
            events,
            metrics,
        )
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def router(redis_client: aioredis.Redis) -> AsyncIterator[Router]:
    async for r in _serve(redis_client):
        yield r


async def test_least_loaded_of_three(router: Router) -> None:
    await router.add("stt", "a", capacity=4)
    await router.add("stt", "b", capacity=4)
    await router.add("stt", "c", capacity=8)
    picks = [(await router.assign(f"s{n}", "eu", "stt"))["stt"] for n in range(8)]
    # a,b,c all empty -> a; then b; then c (0/8); c again (1/8 < 1/4); ...
    assert picks == ["a", "b", "c", "c", "a", "b", "c", "c"]
    assert await router.active() == {"a": 2, "b": 2, "c": 4}


async def test_region_preferred_then_any_other_region(router: Router) -> None:
    await router.add("tts", "eu-1", region="eu", capacity=1)
    await router.add("tts", "us-1", region="us", capacity=5)
    await router.add("tts", "ap-1", region="ap", capacity=5)
    assert (await router.assign("s1", "eu", "tts"))["tts"] == "eu-1"
    await router.assign("s2", "us", "tts")  # us-1 now 1/5
    assert (await router.assign("s3", "eu", "tts"))["tts"] == "ap-1"  # eu full: least loaded


async def test_draining_and_dead_instances_get_no_new_calls(router: Router) -> None:
    await router.add("stt", "draining")
    await router.add("stt", "dead")
    await router.add("stt", "ok", capacity=1)
    await router.registry.set_draining(InstanceInfo("stt", "draining", "draining:50051", "eu", 10))
    await router.registry.redis.delete(router.registry.keys.alive("stt", "dead"))
    assert (await router.assign("s1", "eu", "stt"))["stt"] == "ok"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.assign("s2", "eu", "stt")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_full_service_reserves_nothing_for_the_others(router: Router) -> None:
    await router.add("stt", "stt-1")
    await router.add("reasoning", "r-1")
    await router.add("tts", "tts-1", capacity=1)
    await router.assign("first", "eu", "tts")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.assign("second", "eu", "stt", "reasoning", "tts")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "'tts'" in (err.value.details() or "")
    assert await router.active() == {"stt-1": 0, "r-1": 0, "tts-1": 1}
    assert router.events.names("second") == []


async def test_assign_is_idempotent_and_release_frees_the_slots(router: Router) -> None:
    for svc in ("stt", "reasoning", "tts"):
        await router.add(svc, f"{svc}-1")
        await router.add(svc, f"{svc}-2")
    first = await router.assign("call-1", "eu", "stt", "reasoning", "tts")
    again = await router.assign("call-1", "eu", "stt", "reasoning", "tts")
    assert again == first
    assert sum((await router.active()).values()) == 3
    assert router.events.names("call-1") == ["assigned"]  # the repeat announced nothing new
    assigned = router.events.events[0].assigned.assignments
    assert {a.service: a.instance_id for a in assigned} == first

    reply = await router.stub.Release(router_pb2.ReleaseRequest(session_id="call-1"))
    assert reply.released == 3
    assert sum((await router.active()).values()) == 0
    reply = await router.stub.Release(router_pb2.ReleaseRequest(session_id="call-1"))
    assert reply.released == 0
    assert sum((await router.active()).values()) == 0


async def test_concurrent_assigns_never_exceed_capacity(router: Router) -> None:
    await router.add("stt", "a", capacity=60)
    await router.add("stt", "b", capacity=40)

    async def one(n: int) -> grpc.StatusCode:
        try:
            await router.assign(f"c{n}", "eu", "stt")
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(one(n) for n in range(200)))
    assert codes.count(grpc.StatusCode.OK) == 100
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 100
    assert await router.active() == {"a": 60, "b": 40}


@pytest.mark.parametrize(
    ("session_id", "services", "needle"),
    [
        ("", ["stt"], "session_id is empty"),
        ("a.b", ["stt"], "session_id contains"),
        ("ok", [], "services is empty"),
        ("ok", ["st t"], "service name"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    router: Router, session_id: str, services: list[str], needle: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.stub.Assign(
            router_pb2.AssignRequest(session_id=session_id, region="eu", services=services)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (err.value.details() or "")
    errors = router.metrics.registry.get_sample_value(
        "voicemesh_errors_total", {"service": "session-router", "kind": "invalid_request"}
    )
    assert errors == 1


async def test_redis_down_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis_from_url(f"redis://127.0.0.1:{port}", timeout_s=0.5)
    metrics = ServiceMetrics.create("session-router")
    servicer = RouterServicer(dead, metrics, RecordingEvents(), NoOpTracer())
    server = grpc.aio.server()
    router_pb2_grpc.add_SessionRouterServicer_to_server(servicer, server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = router_pb2_grpc.SessionRouterStub(channel)
            for call in (
                stub.Assign(router_pb2.AssignRequest(session_id="s", services=["stt"])),
                stub.Release(router_pb2.ReleaseRequest(session_id="s")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
        await dead.aclose()


async def test_assign_latency_is_recorded(router: Router) -> None:
    await router.add("stt", "a")
    await router.assign("s1", "eu", "stt")
    count = router.metrics.registry.get_sample_value(
        "voicemesh_stage_latency_seconds_count", {"service": "session-router", "stage": "assign"}
    )
    assert count == 1
