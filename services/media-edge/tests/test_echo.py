"""The echo gate on real speech: the agent's voice coming back on the caller's line does not
interrupt it; the caller talking over it does (Silero VAD, the call core, recorded audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicemesh.audio.frames import FRAME_BYTES, rms_dbfs
from voicemesh.audio.vad import SileroModel, SileroVad, VoiceActivity
from voicemesh.audio.wav import read_wav
from voicemesh.edge import decisions as d
from voicemesh.edge.core import CallCore
from voicemesh.edge.echo import EchoConfig, EchoGate

pytestmark = pytest.mark.unit
CALLER = Path(__file__).resolve().parents[3] / "tests" / "e2e" / "fixtures" / "caller_parking.wav"
ECHO_DELAY_FRAMES = 6  # 120 ms there and back
ECHO_LOSS_DB = 30.0  # what a carrier's echo canceller leaves; louder echo is caught by its words


def samples(path: Path) -> np.ndarray:
    pcm, _ = read_wav(path)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def frames(x: np.ndarray) -> list[bytes]:
    pcm = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def call_over_agent(agent: list[bytes], line: list[bytes], vad_model: SileroModel) -> list[d.Decision]:
    """The agent plays `agent` while the caller's line delivers `line`, frame by frame."""
    core = CallCore()
    core.turns.on_reply_started()  # the agent holds the floor for the whole test
    vad, activity = SileroVad(vad_model), VoiceActivity()
    out: list[d.Decision] = []
    for i, frame in enumerate(line):
        voiced = activity.update(vad.process(frame))
        out += core.on_frame(i, voiced, i * 0.02, rms_dbfs(frame))
        if i < len(agent):
            core.on_frame_played("r1", rms_dbfs(agent[i]))
    return out


@pytest.fixture(scope="module")
def vad_model() -> SileroModel:
    return SileroModel.load()


def test_the_agents_echo_alone_never_pauses_it(jfk_wav: Path, vad_model: SileroModel) -> None:
    agent = samples(jfk_wav)
    echo = np.concatenate([np.zeros(ECHO_DELAY_FRAMES * 320), agent]) * 10 ** (-ECHO_LOSS_DB / 20)
    out = call_over_agent(frames(agent), frames(echo), vad_model)
    assert of_kind(out, d.PausePlayout) == 0
    # and without the gate the same echo would have cut the agent off
    bare = CallCore(echo=EchoConfig(margin_db=0))
    bare.turns.on_reply_started()
    vad, activity, paused = SileroVad(vad_model), VoiceActivity(), 0
    for i, frame in enumerate(frames(echo)):
        paused += of_kind(bare.on_frame(i, activity.update(vad.process(frame)), 0.0, rms_dbfs(frame)), d.PausePlayout)
    assert paused == 1


def test_the_caller_talking_over_the_agents_echo_pauses_it(jfk_wav: Path, vad_model: SileroModel) -> None:
    agent = samples(jfk_wav)
    echo = np.concatenate([np.zeros(ECHO_DELAY_FRAMES * 320), agent]) * 10 ** (-ECHO_LOSS_DB / 20)
    caller = samples(CALLER)
    start = 3 * 16000  # the caller starts 3 s into the agent's reply
    line = echo.copy()
    line[start : start + len(caller)] += caller
    out = call_over_agent(frames(agent), frames(line), vad_model)
    (pause,) = [i for i, x in enumerate(out) if isinstance(x, d.PausePlayout)]
    paused_at = of_kind(out[:pause], d.ForwardAudio) - 1  # the frame that decided it
    onset = start // 320 + next(i for i, f in enumerate(frames(caller)) if rms_dbfs(f) > -40)
    assert onset <= paused_at <= onset + 10  # within the caller's first 200 ms of speech


def of_kind(out: list[d.Decision], kind: type) -> int:
    return sum(isinstance(x, kind) for x in out)


def test_the_gate_forgets_agent_audio_older_than_its_tail() -> None:
    gate = EchoGate(EchoConfig(margin_db=15, tail_ms=100))
    assert gate.threshold(0) is None
    gate.played(0, -10.0)
    assert gate.threshold(5) == -25.0
    assert not gate.passes(5, -30.0) and gate.passes(5, -20.0)
    assert gate.threshold(6) is None and gate.passes(6, -60.0)
