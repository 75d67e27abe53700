"""What a caller is told when the router places no call: `no_capacity` only when the router
says no instance has room; the registry unreachable (or the router down or silent) is
`unavailable`, with the router's own reason."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.trace import NoOpTracer

from voicemesh.audio.vad import SileroModel
from voicemesh.edge.channels import ChannelPool
from voicemesh.edge.port import CallInfo, EndReason, Hangup, MediaPort, PortEvent, Transferred
from voicemesh.edge.roles import router_failure
from voicemesh.edge.session import CallSession, EdgeDeps
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.unit

# What the router answers while Valkey is down (voicemesh.router.store.RegistryUnreachable).
REGISTRY_DOWN = "the session registry (Valkey/Redis) is unreachable: Error 111 connecting to 127.0.0.1:6379."


class Caller(MediaPort):
    """A caller whose call the mesh cannot place; records how it was closed."""

    transport_label = "native"

    def __init__(self) -> None:
        self.info = CallInfo("native", agent="restaurant")
        self.closed: tuple[EndReason, str] | None = None

    async def receive(self) -> PortEvent:
        return Hangup("caller hung up")

    async def play(self, pcm: bytes) -> None:
        return None

    async def mark(self, name: str) -> bool:
        return True

    async def clear(self) -> None:
        return None

    async def transfer(self, target: str) -> Transferred:
        return Transferred("test")

    async def send_dtmf(self, digits: str) -> None:
        return None

    async def close(self, reason: EndReason, message: str = "") -> None:
        self.closed = (reason, message)


class FailingRouter:
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details

    async def Assign(self, request: object, **kw: object) -> object:
        raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), self.details)


@pytest.fixture(scope="module")
def vad_model() -> SileroModel:
    return SileroModel.load()


async def place(
    vad_model: SileroModel, code: grpc.StatusCode, details: str
) -> tuple[Caller, RecordingEvents]:
    caller, events = Caller(), RecordingEvents(service="media-edge")
    deps = EdgeDeps(
        metrics=ServiceMetrics.create("media-edge"),
        events=events,
        tracer=NoOpTracer(),
        router=FailingRouter(code, details),
        channels=ChannelPool(),
        vad_model=vad_model,
    )
    await CallSession(caller, deps).run()
    return caller, events


async def test_a_registry_outage_tells_the_caller_unavailable_with_the_true_reason(
    vad_model: SileroModel,
) -> None:
    caller, events = await place(vad_model, grpc.StatusCode.UNAVAILABLE, REGISTRY_DOWN)
    assert caller.closed is not None
    reason, message = caller.closed
    assert reason is EndReason.UNAVAILABLE
    assert "registry (Valkey/Redis) is unreachable" in message and "capacity" not in message
    ended = [e.call_ended.reason for e in events.events if e.WhichOneof("payload") == "call_ended"]
    assert ended == ["unavailable"]


async def test_a_call_the_mesh_could_not_take_counts_as_failed_not_ok(vad_model: SileroModel) -> None:
    metrics = ServiceMetrics.create("media-edge")
    deps = EdgeDeps(
        metrics=metrics,
        events=RecordingEvents(service="media-edge"),
        tracer=NoOpTracer(),
        router=FailingRouter(grpc.StatusCode.UNAVAILABLE, REGISTRY_DOWN),
        channels=ChannelPool(),
        vad_model=vad_model,
    )
    await CallSession(Caller(), deps).run()
    counted = {
        outcome: metrics.registry.get_sample_value(
            "voicemesh_sessions_total", {"service": "media-edge", "outcome": outcome}
        )
        for outcome in ("ok", "failed")
    }
    assert counted == {"ok": None, "failed": 1.0}  # never counted ok


async def test_a_full_mesh_is_still_no_capacity(vad_model: SileroModel) -> None:
    caller, _ = await place(vad_model, grpc.StatusCode.RESOURCE_EXHAUSTED, "no capacity for service 'stt'")
    assert caller.closed is not None and caller.closed[0] is EndReason.NO_CAPACITY


@pytest.mark.parametrize(
    ("code", "details", "needle"),
    [
        (grpc.StatusCode.UNAVAILABLE, REGISTRY_DOWN, "registry (Valkey/Redis) is unreachable"),
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", "failed to connect"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", "did not answer in 2 s"),
        (grpc.StatusCode.INTERNAL, "assignment failed in Redis/Valkey", "INTERNAL"),
    ],
)
def test_only_a_full_mesh_is_no_capacity(code: grpc.StatusCode, details: str, needle: str) -> None:
    failure = router_failure(code, details)
    assert failure.code == "unavailable"
    assert needle in str(failure) and "capacity" not in str(failure)
    assert router_failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "full").code == "no_capacity"
