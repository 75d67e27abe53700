"""The session-router across a Valkey outage, run by the real service runner against a real
valkey-server that is stopped (or stalled with SIGSTOP) and brought back on the same port:
a new Assign fails fast with UNAVAILABLE naming the registry as unreachable, health turns
NOT_SERVING, and once Valkey is back health is SERVING and Assign places calls again, with
no restart of the router."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
from served import Served, outage_settings, served

from voicemesh.mesh.localservers import LocalServer, redis_url, valkey_server
from voicemesh.mesh.registry import PLACED_ROLES, InstanceInfo, InstanceRegistry, connect_redis
from voicemesh.router.service import RouterService, RouterSettings
from voicemesh.v1 import router_pb2, router_pb2_grpc

pytestmark = pytest.mark.integration

ROUTER_HEALTH = ("", "voicemesh.v1.SessionRouter")
PEERS = [
    InstanceInfo(role, f"{role}-1", f"127.0.0.1:{5000 + n}", "local", 10)
    for n, role in enumerate(PLACED_ROLES)
]


@pytest.fixture
def valkey() -> Iterator[LocalServer]:
    """A valkey-server; `start()` again brings it back (empty) on the same port."""
    server = valkey_server()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


async def register_peers(url: str) -> None:
    """What the stt, reasoning and tts heartbeats do: (re)create their records."""
    client = await connect_redis(url)
    try:
        registry = InstanceRegistry(client, ttl_s=600)
        for info in PEERS:
            await registry.heartbeat(info)
    finally:
        await client.aclose()


@dataclass
class Router:
    svc: Served

    @property
    def stub(self) -> router_pb2_grpc.SessionRouterStub:
        return router_pb2_grpc.SessionRouterStub(self.svc.channel)

    async def assign(self, sid: str) -> dict[str, str]:
        reply = await self.stub.Assign(
            router_pb2.AssignRequest(session_id=sid, region="local", services=list(PLACED_ROLES)), timeout=10
        )
        return {a.service: a.instance_id for a in reply.assignments}

    async def wait_health(self, status: str) -> None:
        await self.svc.wait_health(status, ROUTER_HEALTH)


@pytest.fixture
async def router(valkey: LocalServer, nats_url: str) -> AsyncIterator[Router]:
    await register_peers(redis_url(valkey))
    settings = outage_settings(
        RouterSettings, instance_id="router-1", redis_url=redis_url(valkey), nats_url=nats_url
    )
    async with served("session-router", settings, lambda ctx: RouterService(ctx, settings)) as svc:
        yield Router(svc)


@pytest.mark.parametrize("outage", ["stopped", "stalled"])
async def test_new_calls_fail_fast_with_the_true_reason_and_recover_without_a_restart(
    router: Router, valkey: LocalServer, outage: str
) -> None:
    assert await router.assign("live-1") == {role: f"{role}-1" for role in PLACED_ROLES}
    await router.wait_health("SERVING")

    if outage == "stopped":
        valkey.stop()
    else:  # the process is there and accepts connections, but answers nothing
        os.kill(valkey.pid, signal.SIGSTOP)

    for n in range(3):
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await router.assign(f"new-{n}")
        took = time.perf_counter() - started
        print(f"Assign with Valkey {outage}: {err.value.code().name} in {took * 1000:.0f} ms")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        details = err.value.details() or ""
        assert "registry" in details and "unreachable" in details, details
        assert "capacity" not in details
        assert took < 3.0  # a generous bound; the figure is printed above (the budget is 0.5 s)
    await router.wait_health("NOT_SERVING")

    # A live call's release during the outage fails (the lease frees its slots later), fast.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await router.stub.Release(router_pb2.ReleaseRequest(session_id="live-1"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    if outage == "stopped":
        valkey.start()  # empty: no persistence
        await register_peers(redis_url(valkey))
    else:
        os.kill(valkey.pid, signal.SIGCONT)
    await router.wait_health("SERVING")
    assert await router.assign("new-after") == {role: f"{role}-1" for role in PLACED_ROLES}

    # The router's own record is back too: its heartbeat re-created it.
    client = await connect_redis(redis_url(valkey))
    try:
        listed = await InstanceRegistry(client).instances("session-router")
    finally:
        await client.aclose()
    assert [(s.info.instance_id, s.alive) for s in listed] == [("router-1", True)]
