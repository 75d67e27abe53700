"""One mesh service run in this process by the real runner (`voicemesh.mesh.service.serve`),
for integration tests that watch its health while Valkey or NATS fail under it.

    settings = outage_settings(RouterSettings, instance_id="router-1", redis_url=..., nats_url=...)
    async with served("session-router", settings, factory) as svc:
        await svc.wait_health("NOT_SERVING")
        svc.channel                                 # to the service's gRPC port
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.service import Factory, serve
from voicemesh.mesh.settings import MeshSettings

S = TypeVar("S", bound=MeshSettings)


def outage_settings(cls: type[S], **fields: object) -> S:
    """Settings for a service under an outage: a free port, heartbeats every 0.2 s, no drain
    wait, the internal plane in the clear (its TLS is not what such a test is about)."""
    base: dict[str, object] = {
        "grpc_port": free_port(),
        "heartbeat_interval_s": 0.2,
        "registry_ttl_s": 2.0,
        "drain_timeout_s": 0.0,
        "mesh_tls": "off",
    }
    return cls(**{**base, **fields})  # type: ignore[arg-type]


@dataclass
class Served:
    channel: grpc.aio.Channel

    async def health(self, name: str = "") -> str:
        reply = await health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=5
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def wait_health(self, status: str, names: tuple[str, ...] = ("",), timeout_s: float = 20.0) -> None:
        """Poll until every name in `names` reports `status` (fails at the deadline)."""
        deadline = time.monotonic() + timeout_s
        while (seen := {await self.health(n) for n in names}) != {status}:
            assert time.monotonic() < deadline, f"health {seen}, expected {status}"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def served(name: str, settings: MeshSettings, factory: Factory) -> AsyncIterator[Served]:
    """The service serving (its start-up error raised here); stopped on the way out."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(name, settings, factory, stop, lambda _: ready.set()))
    waiting = asyncio.ensure_future(ready.wait())
    done, _ = await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task in done:
        task.result()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
    try:
        yield Served(channel)
    finally:
        await channel.close()
        stop.set()
        await task
