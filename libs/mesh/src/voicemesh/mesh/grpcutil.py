"""gRPC helpers: channels with sane options, health checks, deadlines."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


def channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to a mesh peer (mTLS comes with the cluster deployment)."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


async def check_health(address: str, service: str = "", timeout_s: float = 1.0) -> str:
    """The peer's health status name ("SERVING", "NOT_SERVING", ...) or "UNREACHABLE"."""
    async with channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "UNKNOWN_SERVICE"
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
