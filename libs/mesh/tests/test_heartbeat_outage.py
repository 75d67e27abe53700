"""A service that can serve without the registry (stt, tts, reasoning, the edge) across a
Valkey outage, run by the real service runner against a real valkey-server: its failed
heartbeats are counted and retried, it stays SERVING, and once Valkey is back (empty) its
heartbeat puts its record back, with no restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from served import outage_settings, served

from voicemesh.mesh.localservers import redis_url, valkey_server
from voicemesh.mesh.registry import InstanceRegistry, connect_redis
from voicemesh.mesh.service import MeshContext, MeshService
from voicemesh.mesh.settings import MeshSettings

pytestmark = pytest.mark.integration


class LiveCallsService(MeshService):
    """Stands in for stt or tts: needs nothing from the registry to serve its calls."""

    name = "stt"

    def __init__(self, ctx: MeshContext) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        return None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        return None


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_failed_heartbeats_are_counted_and_retried_while_the_service_keeps_serving(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicemesh.mesh.service")
    valkey = valkey_server()
    valkey.start()
    settings = outage_settings(
        MeshSettings, instance_id="stt-1", redis_url=redis_url(valkey), nats_url=nats_url
    )
    services: list[LiveCallsService] = []

    def factory(ctx: MeshContext) -> MeshService:
        services.append(LiveCallsService(ctx))
        return services[-1]

    async def registered() -> bool:
        client = await connect_redis(redis_url(valkey))
        try:
            return [s.alive for s in await InstanceRegistry(client).instances("stt")] == [True]
        finally:
            await client.aclose()

    try:
        async with served("stt", settings, factory) as svc:
            metrics = services[0].ctx.metrics

            async def retried() -> bool:
                failed = metrics.registry.get_sample_value(
                    "voicemesh_errors_total", {"service": "stt", "kind": "heartbeat"}
                )
                return (failed or 0) >= 3

            assert await svc.health() == "SERVING" and await registered()
            valkey.stop()
            await until(retried, "three failed heartbeats")
            assert await svc.health() == "SERVING"  # its live calls need no registry

            valkey.start()  # empty: the record is gone until a heartbeat puts it back
            await until(registered, "the heartbeat to re-create the record")
            assert await svc.health() == "SERVING"
    finally:
        valkey.stop()
    # One line when the beats began failing and one when they got through: not one a beat.
    lines = [r.getMessage() for r in caplog.records if r.name == "voicemesh.mesh.service"]
    assert (lines.count("heartbeat failed; retrying"), lines.count("heartbeat recovered")) == (1, 1)
