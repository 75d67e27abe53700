"""The call shell's counters: a call taken counts as started (even one the mesh cannot
place), and the core's barge-in, carried out, counts once, under the port's transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc
import pytest
from opentelemetry.trace import NoOpTracer

from voicemesh.audio.vad import SileroModel
from voicemesh.edge import decisions as d
from voicemesh.edge.channels import ChannelPool
from voicemesh.edge.interruptions import Verdict
from voicemesh.edge.port import CallInfo, EndReason, Hangup, MediaPort, PortEvent, Transferred
from voicemesh.edge.session import CallSession, EdgeDeps, _Roles
from voicemesh.edge.turns import TurnConfig
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.unit


class QuietPort(MediaPort):
    """A caller who hangs up at once; records what the call did to it."""

    transport_label = "twilio"

    def __init__(self) -> None:
        self.info = CallInfo("twilio-stream", agent="restaurant")
        self.cleared = 0
        self.closed: EndReason | None = None

    async def receive(self) -> PortEvent:
        return Hangup("caller hung up")

    async def play(self, pcm: bytes) -> None:
        return None

    async def mark(self, name: str) -> bool:
        return True

    async def clear(self) -> None:
        self.cleared += 1

    async def transfer(self, target: str) -> Transferred:
        return Transferred("test")

    async def send_dtmf(self, digits: str) -> None:
        return None

    async def close(self, reason: EndReason, message: str = "") -> None:
        self.closed = reason


class FullRouter:
    async def Assign(self, request: object, **kw: object) -> object:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no capacity"
        )


class RecordingRole:
    """Stands in for the stt, reasoning and tts clients: records the calls the shell makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def cancel(self, *args: object) -> None:
        self.calls.append(("cancel", args))

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def vad_model() -> SileroModel:
    return SileroModel.load()


def deps(vad_model: SileroModel) -> EdgeDeps:
    return EdgeDeps(
        metrics=ServiceMetrics.create("media-edge"),
        events=RecordingEvents(service="media-edge"),
        tracer=NoOpTracer(),
        router=FullRouter(),
        channels=ChannelPool(),
        vad_model=vad_model,
    )


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "media-edge", **labels}) or 0.0


async def test_a_call_the_mesh_cannot_place_still_counts_as_started(vad_model: SileroModel) -> None:
    port, dep = QuietPort(), deps(vad_model)
    await CallSession(port, dep).run()
    assert port.closed is EndReason.NO_CAPACITY
    assert value(dep.metrics, "voicemesh_calls_started_total", transport="twilio") == 1
    assert value(dep.metrics, "voicemesh_sessions_total", outcome="failed") == 1
    assert value(dep.metrics, "voicemesh_calls_started_total", transport="native") == 0


async def test_a_barge_in_counts_once_when_the_session_carries_it_out(vad_model: SileroModel) -> None:
    port, dep = QuietPort(), deps(vad_model)
    session = CallSession(port, dep)
    role = RecordingRole()
    session._roles = _Roles(role, role, role)  # type: ignore[arg-type]
    core, now, index = session.core, 0.0, 0
    core.configure(TurnConfig(barge_in_min_speech_ms=200, barge_in_min_words=0))  # speech alone cuts in

    def frames(voiced: bool, n: int) -> list[d.Decision]:
        nonlocal now, index
        out: list[d.Decision] = []
        for _ in range(n):
            out += [x for x in core.on_frame(index, voiced, now) if not isinstance(x, d.ForwardAudio)]
            index, now = index + 1, now + 0.02
        return out

    # the caller speaks, the agent answers and plays, the caller cuts in
    frames(True, 20)
    frames(False, 26)
    core.on_final("t1", "four", 0.9, now)
    core.on_delta("r1", "t1", "Great. What day would you like?", now)
    core.on_response_end("r1", "t1", "Great. What day would you like?", now)
    core.on_tts_audio("r1", now)
    core.on_playout_started("r1", now)
    await session._act(frames(True, 9))  # shorter than the barge-in threshold
    assert value(dep.metrics, "voicemesh_barge_ins_total", transport="twilio") == 0
    await session._act(frames(False, 1))
    await session._act(frames(True, 10))
    assert value(dep.metrics, "voicemesh_barge_ins_total", transport="twilio") == 1
    assert port.cleared == 1 and ("cancel", ("r1",)) in role.calls


class PlayingPort(QuietPort):
    def __init__(self) -> None:
        super().__init__()
        self.played: list[bytes] = []

    async def play(self, pcm: bytes) -> None:
        self.played.append(pcm)


async def until(check: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_paused_agent_audio_waits_and_resumes_where_it_stopped(vad_model: SileroModel) -> None:
    port, dep = PlayingPort(), deps(vad_model)
    session = CallSession(port, dep)
    session.core.on_delta("r1", "", "Hello there, welcome to the restaurant.", 0.0)
    audio = [bytes([i]) * 640 for i in range(10)]
    for frame in audio:
        session._playout.put_nowait(("r1", frame))
    task = asyncio.create_task(session._playout_loop())
    try:
        await until(lambda: len(port.played) >= 3)
        await session._act([d.PausePlayout()])
        sent = len(port.played)
        await asyncio.sleep(0.15)  # seven frames' time: none may go out while paused
        assert len(port.played) == sent
        await session._act([d.ResumePlayout(), d.InterruptionJudged(Verdict.BACKCHANNEL)])
        await until(lambda: len(port.played) == 10)
        assert port.played == audio  # nothing lost, nothing repeated, in order
        assert port.cleared == 0
        assert value(dep.metrics, "voicemesh_interruptions_total", verdict="backchannel") == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
