"""gRPC helpers: channels with sane options, health checks, deadlines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .certs import server_name

if TYPE_CHECKING:
    from .mtls import MeshTls

# Keepalive so a dead peer is noticed mid-call; 4 MiB messages are plenty for 20 ms frames.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
]
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


def channel(address: str, tls: MeshTls | None = None, peer: str = "") -> grpc.aio.Channel:
    """A channel to a mesh peer: with `tls`, mTLS as this process's identity, and the
    server must hold `peer`'s certificate (the service it is meant to be); without, plaintext
    (VOICEMESH_MESH_TLS=off, and health-only ports)."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    if not peer:
        raise ValueError("an mTLS channel needs the identity of the peer it dials")
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", server_name(peer))]
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options)


async def check_health(
    address: str, service: str = "", timeout_s: float = 1.0, tls: MeshTls | None = None, peer: str = ""
) -> str:
    """The peer's health status name ("SERVING", "NOT_SERVING", ...) or "UNREACHABLE"."""
    async with channel(address, tls, peer) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "UNKNOWN_SERVICE"
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
