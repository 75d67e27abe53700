"""The running mesh's internal gRPC plane, tried as an intruder on the same machine would:
every service of `voicemesh up` refuses a connection without the mesh's certificate, and a
certified identity reaches only what `access.GRPC_CALLERS` grants it (Valkey and NATS
without credentials: cli/tests/test_mesh_access.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voicemesh.cli.localmesh import LocalMesh
from voicemesh.mesh.grpcutil import channel
from voicemesh.v1 import (
    edge_pb2,
    edge_pb2_grpc,
    reasoning_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    stt_pb2_grpc,
    tts_pb2_grpc,
)

pytestmark = pytest.mark.e2e

Attempt = Callable[[grpc.aio.Channel], Awaitable[object]]


async def _first(call: grpc.aio.StreamStreamCall) -> object:
    return await call.read()


# One call of each service's own API: what an intruder would try first.
CALLS: dict[str, Attempt] = {
    "stt": lambda ch: _first(stt_pb2_grpc.SpeechToTextStub(ch).Recognize(timeout=5)),
    "reasoning": lambda ch: _first(reasoning_pb2_grpc.ReasoningStub(ch).Converse(timeout=5)),
    "tts": lambda ch: _first(tts_pb2_grpc.TextToSpeechStub(ch).Synthesize(timeout=5)),
    "session-router": lambda ch: router_pb2_grpc.SessionRouterStub(ch).Release(
        router_pb2.ReleaseRequest(session_id="intruder"), timeout=5
    ),
    "media-edge": lambda ch: edge_pb2_grpc.MediaEdgeStub(ch).Dial(
        edge_pb2.DialRequest(target="sip:x@127.0.0.1:9"), timeout=5
    ),
}


def health(ch: grpc.aio.Channel) -> Awaitable[object]:
    return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)


async def refusal(ch: grpc.aio.Channel, attempt: Attempt) -> grpc.StatusCode:
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await attempt(ch)
    return refused.value.code()


async def test_no_service_answers_a_caller_without_the_mesh_certificate(mesh: LocalMesh) -> None:
    assert {s.name for s in mesh.services} == set(CALLS)
    for svc in mesh.services:
        for what, attempt in (("health", health), ("its API", CALLS[svc.name])):
            code = await refusal(grpc.aio.insecure_channel(svc.grpc_address), attempt)
            assert code == grpc.StatusCode.UNAVAILABLE, (svc.instance_id, what)


async def test_a_certified_identity_reaches_only_what_it_is_granted(mesh: LocalMesh) -> None:
    """The operator's certificate (the CLI's, the one an operator's shell holds) asks health
    everywhere and may dial through the edge, but calls no service's API; a service's own
    certificate (tts) cannot use the router or another service either."""
    operator, tts = mesh.tls_as("cli"), mesh.tls_as("tts")
    for svc in mesh.services:
        async with channel(svc.grpc_address, operator, svc.name) as ch:
            assert (await health(ch)).status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[attr-defined]
        for who, creds in (("cli", operator), ("tts", tts)):
            if (who, svc.name) == ("cli", "media-edge"):
                continue  # `voicemesh dial`: the operator's one grant (test_sip.py dials)
            code = await refusal(channel(svc.grpc_address, creds, svc.name), CALLS[svc.name])
            assert code == grpc.StatusCode.PERMISSION_DENIED, (who, svc.instance_id)
