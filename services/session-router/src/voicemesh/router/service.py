"""The session-router process: `SessionRouter` over the registry in Valkey/Redis, and the
registry census (`voicemesh_registry_instances`) refreshed in the background while it runs.

The router cannot place a call without the registry, so it is the one service whose
readiness follows it (`needs_registry`): NOT_SERVING while its heartbeat cannot reach
Valkey/Redis, SERVING again once one gets through, with no restart. Meanwhile Assign and
Release fail within `router_registry_timeout_s` with UNAVAILABLE naming the registry as
unreachable (their own client, with that bound on every connect and reply).
"""

from __future__ import annotations

import asyncio

import grpc
from pydantic import Field

from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.registry import InstanceRegistry, bounded_client
from voicemesh.mesh.service import Factory, MeshContext, MeshService, run_main
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import router_pb2_grpc

from .census import DEFAULT_REFRESH_S, RegistryCensus
from .servicer import RouterServicer
from .store import DEFAULT_LEASE_S, DEFAULT_TIMEOUT_S


class RouterSettings(MeshSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # How long a session's reservation lives without Release (a crashed edge frees slots then).
    router_lease_s: float = Field(default=DEFAULT_LEASE_S, gt=0)
    # How often the registry census (instances per role, region and state) is refreshed.
    router_census_s: float = Field(default=DEFAULT_REFRESH_S, gt=0)
    # The most an Assign or Release waits for Valkey/Redis before it fails UNAVAILABLE.
    router_registry_timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)


class RouterService(MeshService):
    name = "session-router"
    health_names = ("voicemesh.v1.SessionRouter",)
    needs_registry = True

    def __init__(self, ctx: MeshContext, settings: RouterSettings) -> None:
        self.ctx = ctx
        timeout_s = settings.router_registry_timeout_s
        # Per attempt half the budget: a connect or reply that fails is tried once more.
        self.redis = bounded_client(ctx.redis, timeout_s / 2)
        self.servicer = RouterServicer(
            self.redis,
            ctx.metrics,
            ctx.events,
            ctx.tracer,
            lease_s=settings.router_lease_s,
            timeout_s=timeout_s,
        )
        self.census = RegistryCensus(
            InstanceRegistry(ctx.redis, ttl_s=settings.registry_ttl_s), ctx.metrics, settings.router_census_s
        )
        self._census_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.servicer.start()
        self._census_task = asyncio.create_task(self.census.run(), name="registry-census")

    async def close(self) -> None:
        await cancel_and_wait(self._census_task)
        self._census_task = None
        await self.redis.aclose()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_SessionRouterServicer_to_server(self.servicer, server)


def _factory(settings: RouterSettings) -> Factory:
    return lambda ctx: RouterService(ctx, settings)


def main() -> None:
    run_main("session-router", RouterSettings, _factory)
