"""The router's decisions (local, spilled, no_capacity, error per role) and its registry census
(instances per role, region and state), over a real grpc.aio server and a real valkey-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry.trace import NoOpTracer

from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.metrics import RegistryState, ServiceMetrics
from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry, InstanceState, redis_from_url
from voicemesh.mesh.service import MeshContext
from voicemesh.router.census import RegistryCensus, count_instances
from voicemesh.router.service import RouterService, RouterSettings
from voicemesh.router.servicer import RouterServicer
from voicemesh.v1 import router_pb2, router_pb2_grpc

SERVICE = "session-router"


@dataclass
class Router:
    stub: router_pb2_grpc.SessionRouterStub
    registry: InstanceRegistry
    metrics: ServiceMetrics

    async def assign(self, sid: str, region: str, *services: str) -> grpc.StatusCode:
        try:
            await self.stub.Assign(router_pb2.AssignRequest(session_id=sid, region=region, services=services))
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def add(self, service: str, iid: str, region: str, capacity: int = 10) -> InstanceInfo:
        info = InstanceInfo(service, iid, f"{iid}:50051", region, capacity)
        await self.registry.register(info)
        return info

    def decisions(self, role: str, result: str) -> float:
        labels = {"service": SERVICE, "role": role, "result": result}
        return self.metrics.registry.get_sample_value("voicemesh_router_decisions_total", labels) or 0.0

    def instances(self, role: str, region: str, state: str) -> float | None:
        labels = {"service": SERVICE, "role": role, "region": region, "state": state}
        return self.metrics.registry.get_sample_value("voicemesh_registry_instances", labels)


async def serve(redis: aioredis.Redis) -> AsyncIterator[Router]:
    metrics = ServiceMetrics.create(SERVICE)
    servicer = RouterServicer(redis, metrics, RecordingEvents(service=SERVICE), NoOpTracer())
    await servicer.start()
    server = grpc.aio.server()
    router_pb2_grpc.add_SessionRouterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Router(router_pb2_grpc.SessionRouterStub(channel), InstanceRegistry(redis, ttl_s=60), metrics)
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def router(redis_client: aioredis.Redis) -> AsyncIterator[Router]:
    async for r in serve(redis_client):
        yield r


async def until(condition: Callable[[], bool], what: str, within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.integration
async def test_each_role_of_a_placed_call_is_local_or_spilled(router: Router) -> None:
    await router.add("stt", "stt-eu", "eu", capacity=1)
    await router.add("stt", "stt-us", "us")
    await router.add("tts", "tts-eu", "eu")
    assert await router.assign("c1", "eu", "stt", "tts") == grpc.StatusCode.OK
    assert await router.assign("c2", "eu", "stt", "tts") == grpc.StatusCode.OK  # eu stt is full
    assert await router.assign("c3", "", "tts") == grpc.StatusCode.OK  # no region: any is local
    assert (router.decisions("stt", "local"), router.decisions("stt", "spilled")) == (1, 1)
    assert (router.decisions("tts", "local"), router.decisions("tts", "spilled")) == (3, 0)
    assert await router.assign("c2", "eu", "stt", "tts") == grpc.StatusCode.OK  # a renewal
    assert router.decisions("stt", "spilled") == 1 and router.decisions("tts", "local") == 3


@pytest.mark.integration
async def test_a_refused_call_counts_no_capacity_for_the_role_without_room(router: Router) -> None:
    await router.add("stt", "stt-1", "eu")
    await router.add("tts", "tts-1", "eu", capacity=1)
    assert await router.assign("c1", "eu", "tts") == grpc.StatusCode.OK
    assert await router.assign("c2", "eu", "stt", "tts") == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert router.decisions("tts", "no_capacity") == 1
    assert router.decisions("stt", "no_capacity") == 0 and router.decisions("stt", "local") == 0


@pytest.mark.integration
async def test_a_registry_failure_counts_an_error_for_every_role_asked_for() -> None:
    dead = redis_from_url(f"redis://127.0.0.1:{free_port()}", timeout_s=0.5)
    metrics = ServiceMetrics.create(SERVICE)
    servicer = RouterServicer(dead, metrics, RecordingEvents(), NoOpTracer())
    server = grpc.aio.server()
    router_pb2_grpc.add_SessionRouterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = router_pb2_grpc.SessionRouterStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Assign(router_pb2.AssignRequest(session_id="s", services=["stt", "tts"]))
        for role in ("stt", "tts"):
            labels = {"service": SERVICE, "role": role, "result": "error"}
            assert metrics.registry.get_sample_value("voicemesh_router_decisions_total", labels) == 1
    finally:
        await server.stop(None)
        await dead.aclose()


@pytest.mark.integration
async def test_the_census_follows_the_registry_and_forgets_vanished_instances(router: Router) -> None:
    census = RegistryCensus(router.registry, router.metrics, refresh_s=0.02)
    a = await router.add("stt", "stt-a", "eu")
    b = await router.add("stt", "stt-b", "eu")
    await router.add("tts", "tts-a", "us")
    task = asyncio.create_task(census.run())
    try:
        await until(lambda: router.instances("stt", "eu", "serving") == 2, "two serving stt")
        assert router.instances("stt", "eu", "draining") == 0  # shown at 0, for alerts
        assert router.instances("tts", "us", "serving") == 1

        await router.registry.set_draining(a)
        await router.registry.redis.delete(router.registry.keys.alive("stt", "stt-b"))  # missed heartbeats
        await until(lambda: router.instances("stt", "eu", "draining") == 1, "one draining")
        assert router.instances("stt", "eu", "dead") == 1
        assert router.instances("stt", "eu", "serving") == 0

        for info in (a, b):
            await router.registry.deregister(info)
        await until(lambda: router.instances("stt", "eu", "dead") is None, "stt in eu forgotten")
        assert router.instances("stt", "eu", "serving") is None
        assert router.instances("tts", "us", "serving") == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.integration
async def test_a_census_that_cannot_read_the_registry_keeps_the_last_one_and_says_so() -> None:
    metrics = ServiceMetrics.create(SERVICE)
    metrics.set_registry_instances({("stt", "eu", RegistryState.SERVING): 2})
    dead = redis_from_url(f"redis://127.0.0.1:{free_port()}", timeout_s=0.5)
    task = asyncio.create_task(RegistryCensus(InstanceRegistry(dead), metrics, refresh_s=0.02).run())
    errors = {"service": SERVICE, "kind": "registry_census"}
    try:
        await until(
            lambda: (metrics.registry.get_sample_value("voicemesh_errors_total", errors) or 0) >= 2, "errors"
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await dead.aclose()
    labels = {"service": SERVICE, "role": "stt", "region": "eu", "state": "serving"}
    assert metrics.registry.get_sample_value("voicemesh_registry_instances", labels) == 2


def state(service: str, region: str, alive: bool = True, draining: bool = False) -> InstanceState:
    return InstanceState(InstanceInfo(service, f"{service}-{region}", "x:1", region, 4), 0, draining, alive)


@pytest.mark.unit
def test_count_instances_reports_every_state_of_a_listed_role_and_region() -> None:
    counts = count_instances(
        [
            state("stt", "eu"),
            state("stt", "eu", draining=True),
            state("stt", "eu", alive=False, draining=True),
        ]
    )
    assert counts == {
        ("stt", "eu", RegistryState.SERVING): 1,
        ("stt", "eu", RegistryState.DRAINING): 1,
        ("stt", "eu", RegistryState.DEAD): 1,  # dead whatever it said before it went silent
    }
    assert count_instances([]) == {}


@pytest.mark.integration
async def test_the_router_service_runs_the_census_from_start_to_close(
    redis_client: aioredis.Redis, valkey_server: str
) -> None:
    settings = RouterSettings(redis_url=valkey_server, router_census_s=0.02)
    metrics = ServiceMetrics.create(SERVICE)
    service = RouterService(
        MeshContext(settings, metrics, RecordingEvents(), NoOpTracer(), redis_client), settings
    )
    await InstanceRegistry(redis_client).register(InstanceInfo("reasoning", "r-1", "r-1:50053", "ap", 5))
    labels = {"service": SERVICE, "role": "reasoning", "region": "ap", "state": "serving"}
    await service.start()
    try:
        await until(
            lambda: metrics.registry.get_sample_value("voicemesh_registry_instances", labels) == 1, "census"
        )
    finally:
        await service.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "registry-census"]
