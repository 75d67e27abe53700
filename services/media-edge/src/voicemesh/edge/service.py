"""The media-edge service: transports in, one CallSession per call."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc

from voicemesh.audio.vad import SileroModel
from voicemesh.mesh.service import MeshContext, MeshService
from voicemesh.v1 import edge_pb2_grpc, router_pb2_grpc

from .channels import ChannelPool
from .dialer import Dialer
from .endpointing import EndpointMetrics, TurnEndModel
from .filler_cache import FillerCache, FillerMetrics
from .ingress import WebSocketIngress
from .native import NativeWebSocketTransport
from .port import CallTransport, EndReason, MediaPort
from .session import CallSession, EdgeDeps
from .settings import EdgeSettings
from .sip.transport import SipCallTransport
from .tokens import CallTokens
from .twilio import TwilioStreamTransport
from .webrtc.agents import agent_choices
from .webrtc.transport import WebRtcTransport

log = logging.getLogger(__name__)

# How long the calls still live at shutdown get to send their `end` and close.
CLOSE_CALLS_S = 3.0


class EdgeService(MeshService):
    name = "media-edge"

    def __init__(self, ctx: MeshContext, settings: EdgeSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.channels = ChannelPool(tls=ctx.tls)
        self.ingress = WebSocketIngress(settings.ws_host, settings.ws_port, ctx.metrics)
        self.transports: list[CallTransport] = [
            NativeWebSocketTransport(self.ingress, settings.edge_token, ctx.metrics),
            TwilioStreamTransport(
                self.ingress,
                ctx.metrics,
                auth_token=settings.twilio_auth_token,
                stream_url=settings.twilio_stream_url,
            ),
        ]
        if settings.webrtc_enabled:
            secret = settings.call_token_secret
            self.transports.append(
                WebRtcTransport(
                    self.ingress,
                    ctx.metrics,
                    tokens=CallTokens(secret, max_ttl_s=86400) if secret else None,
                    edge_token=settings.edge_token,
                    token_ttl_s=settings.call_token_ttl_s,
                    ice=settings.ice(),
                    agents=agent_choices(Path(settings.agents_dir) if settings.agents_dir else None),
                    default_agent=settings.default_agent,
                    can_take_call=self._can_take_call,
                )
            )
        self.sip = SipCallTransport(settings.sip(), ctx.metrics) if settings.sip_enabled else None
        if self.sip is not None:
            self.transports.append(self.sip)
        for transport in self.transports:
            ctx.metrics.prepare_transport(transport.transport_label)
        self._calls: dict[asyncio.Task[None], CallSession] = {}
        self._deps: EdgeDeps | None = None
        self.endpoints = EndpointMetrics.create(ctx.metrics)
        self.fillers = FillerCache(FillerMetrics.create(ctx.metrics), ctx.metrics)
        self.turn_model: TurnEndModel | None = None
        self._draining = False

    async def start(self) -> None:
        vad_model = await asyncio.to_thread(SileroModel.load)
        if self.settings.smart_turn_enabled:
            self.turn_model = await asyncio.to_thread(
                TurnEndModel.load,
                self.settings.smart_turn_model or None,
                self.ctx.metrics,
                self.endpoints,
                max_wait_s=self.settings.smart_turn_max_wait_ms / 1000,
            )
        router = router_pb2_grpc.SessionRouterStub(
            self.channels.get(self.settings.router_address, "session-router")
        )
        self._deps = EdgeDeps(
            metrics=self.ctx.metrics,
            events=self.ctx.events,
            tracer=self.ctx.tracer,
            router=router,
            channels=self.channels,
            vad_model=vad_model,
            region=self.settings.region,
            media_timeout_s=self.settings.media_timeout_s,
            lease_renew_s=self.settings.router_renew_s,
            turn_model=self.turn_model,
            endpoints=self.endpoints,
            fillers=self.fillers,
        )
        for transport in self.transports:
            await transport.start(self._on_call)
        await self.ingress.start()
        for transport in self.transports:
            log.info("transport listening", extra={"transport": transport.name, "url": transport.describe()})

    def add_to_server(self, server: grpc.aio.Server) -> None:
        dialer = Dialer(self.sip, self.settings.edge_token, self.ctx.metrics, self._can_take_call)
        edge_pb2_grpc.add_MediaEdgeServicer_to_server(dialer, server)

    def _can_take_call(self) -> bool:
        return not self._draining and len(self._calls) < self.settings.capacity

    def active_sessions(self) -> int:
        return len(self._calls)

    async def _on_call(self, port: MediaPort) -> None:
        assert self._deps is not None
        if not self._can_take_call():
            self.ctx.metrics.error("call_refused")
            observer = port.observer()
            if observer is not None:
                await observer.error("unavailable", "this edge is not taking new calls")
            await port.close(EndReason.UNAVAILABLE, "this edge is not taking new calls")
            return
        session = CallSession(port, self._deps)
        task = asyncio.current_task()
        assert task is not None
        self._calls[task] = session  # type: ignore[index]
        try:
            await session.run()
        finally:
            self._calls.pop(task, None)  # type: ignore[call-overload]

    async def drain(self) -> None:
        """Take no new calls, but keep listening: a caller who arrives now is told
        `unavailable` (and can try another edge) instead of meeting a refused connection."""
        self._draining = True

    async def close(self) -> None:
        """End the calls the drain did not see finish with a proper `end` (reason
        `unavailable`), not a dropped socket, then stop listening."""
        for session in list(self._calls.values()):
            session.end(EndReason.UNAVAILABLE, "this edge is shutting down")
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=CLOSE_CALLS_S)
        for transport in self.transports:
            await transport.stop()
        await self.ingress.stop()
        await self.channels.close()
        if self.turn_model is not None:
            self.turn_model.close()
