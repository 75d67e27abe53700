"""The ingress's keepalive pings measure the round trip to the caller, per transport, on a
real WebSocket server on a free port (a short ping interval instead of the 20 s default)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from voicemesh.edge.ingress import Socket, SocketClosed, WebSocketIngress
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.integration


def rtt(metrics: ServiceMetrics, transport: str, sample: str = "count") -> float:
    labels = {"service": "media-edge", "transport": transport}
    return metrics.registry.get_sample_value(f"voicemesh_media_rtt_seconds_{sample}", labels) or 0.0


async def test_each_pong_is_a_round_trip_of_the_routes_transport() -> None:
    metrics = ServiceMetrics.create("media-edge")
    ingress = WebSocketIngress("127.0.0.1", 0, metrics, ping_interval_s=0.05, ping_timeout_s=5)

    async def hold(ws: Socket) -> None:
        # a port keeps a reader on its socket: that is where the pongs are read
        while True:
            try:
                await ws.recv()
            except SocketClosed:
                return

    ingress.add_socket("/v1/call", lambda request: None, hold, transport_label="native")
    ingress.add_socket("/v1/twilio", lambda request: None, hold, transport_label="twilio")
    await ingress.start()
    try:
        # the caller's side never pings: its library answers the edge's pings by itself
        async with connect(ingress.url("/v1/twilio"), ping_interval=None):
            async with asyncio.timeout(10):
                while rtt(metrics, "twilio") < 3:
                    await asyncio.sleep(0.01)
        assert 0 < rtt(metrics, "twilio", "sum") / rtt(metrics, "twilio") < 0.5  # loopback
        assert rtt(metrics, "native") == 0
    finally:
        await ingress.stop()
