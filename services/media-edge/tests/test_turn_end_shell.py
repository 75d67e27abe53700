"""The end-of-turn model in the shell: the agent's settings reach the core, checks run off
the event loop on the caller's own audio, at most one per call, and a check that would wait
too long is skipped and counted (the silence rule then ends the turn)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from opentelemetry.trace import NoOpTracer

from voicemesh.audio.frames import FRAME_BYTES
from voicemesh.edge import decisions as d
from voicemesh.edge.channels import ChannelPool
from voicemesh.edge.endpointing import CallerAudio, EndpointMetrics, TurnEndModel
from voicemesh.edge.port import CallInfo, EndReason, Hangup, MediaPort, PortEvent, Transferred
from voicemesh.edge.profile import call_settings
from voicemesh.edge.session import CallSession, EdgeDeps, _Roles
from voicemesh.edge.turns import EndpointBy, SmartTurnConfig, TurnConfig
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import reasoning_pb2

pytestmark = pytest.mark.unit


class QuietPort(MediaPort):
    """A port nobody calls on: the tests feed the core's frames themselves."""

    transport_label = "native"

    def __init__(self) -> None:
        self.info = CallInfo("native")

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
        return None


async def until(check: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "media-edge", **labels}) or 0.0


# ---- the agent's settings ---------------------------------------------------------------------


def test_the_agents_settings_reach_the_turn_core() -> None:
    on = reasoning_pb2.AgentProfile(
        smart_turn=reasoning_pb2.SmartTurn(enabled=True, min_probability=0.9, check_after_ms=240)
    )
    assert call_settings(on).turns.smart_turn == SmartTurnConfig(check_after_ms=240, min_probability=pytest.approx(0.9))
    zeros = reasoning_pb2.AgentProfile(smart_turn=reasoning_pb2.SmartTurn(enabled=True))
    assert call_settings(zeros).turns.smart_turn == SmartTurnConfig()
    off = reasoning_pb2.AgentProfile(smart_turn=reasoning_pb2.SmartTurn(enabled=False, min_probability=0.9))
    assert call_settings(off).turns.smart_turn is None
    # an older reasoning service sends nothing: today's behaviour, silence alone
    assert call_settings(reasoning_pb2.AgentProfile()).turns.smart_turn is None


# ---- the caller's audio -------------------------------------------------------------------------


def frame(i: int) -> bytes:
    return bytes([i % 256]) * FRAME_BYTES


def test_caller_audio_gives_the_frames_asked_for_as_far_as_it_holds_them() -> None:
    audio = CallerAudio(frames=5)
    for i in range(8):
        audio.push(frame(i))
    assert audio.window(4, 6) == frame(4) + frame(5) + frame(6)
    assert audio.window(0, 7) == b"".join(frame(i) for i in range(3, 8))  # the last 5 only
    assert audio.window(6, 20) == frame(6) + frame(7)
    assert audio.window(9, 12) == b""


# ---- the worker -------------------------------------------------------------------------------


class FakeModel:
    """Answers `p` after `delay_s` on whichever thread runs it; records what it heard."""

    def __init__(self, p: float, delay_s: float = 0.0) -> None:
        self.p, self.delay_s = p, delay_s
        self.heard: list[bytes] = []
        self.threads: set[int] = set()

    def predict(self, pcm16: bytes) -> float:
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)
        self.heard.append(pcm16)
        return self.p


def runner(model: FakeModel, max_wait_s: float = 0.1) -> tuple[TurnEndModel, ServiceMetrics]:
    metrics = ServiceMetrics.create("media-edge")
    return TurnEndModel(model, metrics, EndpointMetrics.create(metrics), max_wait_s=max_wait_s), metrics


async def test_checks_run_off_the_event_loop_and_are_timed() -> None:
    model = FakeModel(0.9)
    turn_model, metrics = runner(model)
    try:
        assert await turn_model.check(b"\x00\x00" * 10) == 0.9
        assert model.threads and threading.get_ident() not in model.threads
        assert value(metrics, "voicemesh_turn_checks_total", result="run") == 1
        assert value(metrics, "voicemesh_stage_latency_seconds_count", stage="smart_turn") == 1
    finally:
        turn_model.close()


async def test_a_check_that_would_wait_behind_others_too_long_is_skipped_and_counted() -> None:
    model = FakeModel(0.9, delay_s=0.15)  # each check holds the one worker for 150 ms
    turn_model, metrics = runner(model, max_wait_s=0.1)
    try:
        results = await asyncio.gather(*(turn_model.check(bytes([i]) * 2) for i in range(3)))
        # the first runs; the second waits 150 ms (> 100 ms) and is dropped, the third too
        assert results == [0.9, None, None]
        assert model.heard == [b"\x00\x00"]
        assert value(metrics, "voicemesh_turn_checks_total", result="run") == 1
        assert value(metrics, "voicemesh_turn_checks_total", result="skipped") == 2
    finally:
        turn_model.close()


async def test_a_model_that_raises_is_counted_and_the_silence_decides() -> None:
    class Broken(FakeModel):
        def predict(self, pcm16: bytes) -> float:
            raise RuntimeError("onnxruntime fell over")

    turn_model, metrics = runner(Broken(0.0))
    try:
        assert await turn_model.check(b"\x00\x00") is None
        assert value(metrics, "voicemesh_turn_checks_total", result="failed") == 1
    finally:
        turn_model.close()


def test_a_missing_model_file_loads_nothing_and_says_so_once(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    metrics = ServiceMetrics.create("media-edge")
    with caplog.at_level("WARNING"):
        loaded = TurnEndModel.load(tmp_path / "nowhere.onnx", metrics, EndpointMetrics.create(metrics))
    assert loaded is None
    lines = [r for r in caplog.records if "end-of-turn model" in r.getMessage()]
    assert len(lines) == 1 and "silence alone" in lines[0].getMessage()


# ---- the call shell -----------------------------------------------------------------------------


class RecordingStt:
    def __init__(self) -> None:
        self.flushed: list[str] = []

    def flush(self, turn_id: str) -> None:
        self.flushed.append(turn_id)

    async def aclose(self) -> None:
        return None


def call(model: FakeModel) -> tuple[CallSession, RecordingStt, ServiceMetrics, TurnEndModel]:
    turn_model, metrics = runner(model)
    deps = EdgeDeps(
        metrics=metrics,
        events=RecordingEvents(service="media-edge"),
        tracer=NoOpTracer(),
        router=None,
        channels=ChannelPool(),
        vad_model=None,  # type: ignore[arg-type]  # frames are fed to the core directly
        turn_model=turn_model,
        endpoints=turn_model.endpoints,
    )
    session = CallSession(QuietPort(), deps)
    stt = RecordingStt()
    session._roles = _Roles(stt, stt, stt)  # type: ignore[arg-type]
    session._audio = CallerAudio()
    session.core.configure(TurnConfig(endpoint_silence_ms=500, smart_turn=SmartTurnConfig()))
    return session, stt, metrics, turn_model


async def frames(session: CallSession, start: int, pattern: str) -> None:
    """'#' a voiced frame (its bytes say its index), '.' a silent one, through the shell."""
    assert session._audio is not None
    for i, ch in enumerate(pattern, start):
        session._audio.push(frame(i) if ch == "#" else bytes(FRAME_BYTES))
        out = session.core.on_frame(i, ch == "#", i * 0.02)
        await session._act([x for x in out if not isinstance(x, d.ForwardAudio)])


async def test_a_confident_check_ends_the_turn_early_on_the_callers_own_audio() -> None:
    model = FakeModel(0.95)
    session, stt, metrics, turn_model = call(model)
    try:
        await frames(session, 0, "..." + "#" * 20 + "." * 10)  # asked at frame 32
        await until(lambda: stt.flushed == ["t1"])
        assert model.heard == [b"".join(frame(i) for i in range(3, 23)) + bytes(FRAME_BYTES * 10)]
        assert value(metrics, "voicemesh_endpoints_total", decided_by=EndpointBy.MODEL.value) == 1
        await frames(session, 33, "." * 20)  # past the endpoint silence: no second end
        assert stt.flushed == ["t1"]
        assert value(metrics, "voicemesh_endpoints_total", decided_by=EndpointBy.SILENCE.value) == 0
    finally:
        turn_model.close()


async def test_an_unsure_check_leaves_the_turn_to_the_silence() -> None:
    session, stt, metrics, turn_model = call(FakeModel(0.3))
    try:
        await frames(session, 0, "#" * 20 + "." * 10)
        await until(lambda: value(metrics, "voicemesh_turn_checks_total", result="run") == 1)
        assert stt.flushed == [] and session.core.state == "user_speaking"
        await frames(session, 30, "." * 15)  # the 25th silent frame: 500 ms
        assert stt.flushed == ["t1"]
        assert value(metrics, "voicemesh_endpoints_total", decided_by=EndpointBy.SILENCE.value) == 1
    finally:
        turn_model.close()


async def test_one_check_per_call_at_a_time() -> None:
    model = FakeModel(0.3, delay_s=0.2)
    session, _, metrics, turn_model = call(model)
    try:
        await frames(session, 0, "#" * 20 + "." * 10)  # a check starts (200 ms)...
        await frames(session, 30, "###" + "." * 10)  # ...and the next pause comes at once
        assert value(metrics, "voicemesh_turn_checks_total", result="skipped") == 1
        await until(lambda: value(metrics, "voicemesh_turn_checks_total", result="run") == 1)
        assert len(model.heard) == 1
    finally:
        turn_model.close()
