"""The media-edge service: transports in, one CallSession per call."""

from __future__ import annotations

import asyncio
import logging

from voicemesh.audio.vad import SileroModel
from voicemesh.mesh.service import MeshContext, MeshService
from voicemesh.v1 import router_pb2_grpc

from .channels import ChannelPool
from .native import NativeWebSocketTransport
from .session import CallSession, EdgeDeps
from .settings import EdgeSettings
from .transport import CallChannel, CallRequest, CallTransport

log = logging.getLogger(__name__)


class EdgeService(MeshService):
    name = "media-edge"

    def __init__(self, ctx: MeshContext, settings: EdgeSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.channels = ChannelPool()
        self.transports: list[CallTransport] = [
            NativeWebSocketTransport(settings.ws_host, settings.ws_port, settings.edge_token, ctx.metrics)
        ]
        self._calls: set[asyncio.Task[None]] = set()
        self._deps: EdgeDeps | None = None
        self._draining = False

    async def start(self) -> None:
        vad_model = await asyncio.to_thread(SileroModel.load)
        router = router_pb2_grpc.SessionRouterStub(self.channels.get(self.settings.router_address))
        self._deps = EdgeDeps(
            metrics=self.ctx.metrics,
            events=self.ctx.events,
            tracer=self.ctx.tracer,
            router=router,
            channels=self.channels,
            vad_model=vad_model,
            region=self.settings.region,
        )
        for transport in self.transports:
            await transport.start(self._on_call)
            log.info("transport listening", extra={"transport": transport.name, "url": transport.describe()})

    def add_to_server(self, server: object) -> None:
        return None  # the edge serves only health over gRPC

    def active_sessions(self) -> int:
        return len(self._calls)

    async def _on_call(self, channel: CallChannel, request: CallRequest) -> None:
        assert self._deps is not None
        if self._draining or len(self._calls) >= self.settings.max_calls:
            self.ctx.metrics.error("call_refused")
            await channel.send_error("unavailable", "this edge is not taking new calls")
            await channel.close("unavailable")
            return
        session = CallSession(channel, request, self._deps)
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)  # type: ignore[arg-type]
        try:
            await session.run()
        finally:
            self._calls.discard(task)  # type: ignore[arg-type]

    async def drain(self) -> None:
        self._draining = True
        for transport in self.transports:
            await transport.stop()

    async def close(self) -> None:
        await self.channels.close()
