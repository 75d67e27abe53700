"""The session-router process: `SessionRouter` over the registry in Valkey/Redis."""

from __future__ import annotations

import grpc
from pydantic import Field

from voicemesh.mesh.service import Factory, MeshContext, MeshService, run_main
from voicemesh.mesh.settings import MeshSettings
from voicemesh.v1 import router_pb2_grpc

from .servicer import RouterServicer
from .store import DEFAULT_LEASE_S


class RouterSettings(MeshSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # How long a session's reservation lives without Release (a crashed edge frees slots then).
    router_lease_s: float = Field(default=DEFAULT_LEASE_S, gt=0)


class RouterService(MeshService):
    name = "session-router"
    health_names = ("voicemesh.v1.SessionRouter",)

    def __init__(self, ctx: MeshContext, settings: RouterSettings) -> None:
        self.ctx = ctx
        self.servicer = RouterServicer(
            ctx.redis, ctx.metrics, ctx.events, ctx.tracer, lease_s=settings.router_lease_s
        )

    async def start(self) -> None:
        await self.servicer.start()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_SessionRouterServicer_to_server(self.servicer, server)


def _factory(settings: RouterSettings) -> Factory:
    return lambda ctx: RouterService(ctx, settings)


def main() -> None:
    run_main("session-router", RouterSettings, _factory)
