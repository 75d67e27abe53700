"""Placing calls against a fake media-edge: pacing, voice-to-voice, output, error paths.

The fake edge at the bottom of this file stands in for media-edge (which has its own
tests); it records what it received and when, so the tests check the caller against it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from voicemesh.audio.wav import read_wav, write_wav
from voicemesh.cli import call
from voicemesh.cli.wsclient import CallFailed, place_call
from voicemesh.mesh.localservers import free_port
from voicemesh.v1 import edge_pb2

pytestmark = pytest.mark.integration

TOKEN = "secret"


def tone(seconds: float, rate: int, lead_s: float = 0.1, tail_s: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    body = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    return np.concatenate(
        [np.zeros(int(lead_s * rate), np.int16), body, np.zeros(int(tail_s * rate), np.int16)]
    )


@pytest.fixture
def wavs(tmp_path: Path) -> list[Path]:
    """Two caller turns: a 48 kHz stereo WAV (converted by the client) and a 16 kHz mono one."""
    first = tmp_path / "first.wav"
    mono = tone(0.6, 48000)
    with wave.open(str(first), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.repeat(mono, 2).astype("<i2").tobytes())
    second = tmp_path / "second.wav"
    write_wav(second, tone(0.4, 16000).astype("<i2").tobytes())
    return [first, second]


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicemesh")
    sub = parser.add_subparsers(required=True)
    call.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


async def run_cli(argv: list[str]) -> int:
    """The command runs its own event loop: give it a thread, the fake edge keeps ours."""
    return await asyncio.to_thread(cli, argv)


def frame_aligned_find(haystack: bytes, needle: bytes) -> int:
    pos = haystack.find(needle)
    while pos != -1 and pos % FRAME_BYTES:
        pos = haystack.find(needle, pos + 1)
    return pos


async def test_call_is_paced_in_real_time_and_measures_voice_to_voice(wavs: list[Path]) -> None:
    async with FakeEdge().running() as edge:
        result = await place_call(edge.url, TOKEN, wavs)

    # Pacing: one 640-byte frame per message, 20 ms apart, no bursts, no gaps.
    times = [t for t, _ in edge.frames]
    assert all(len(f) == FRAME_BYTES for _, f in edge.frames)
    assert len(edge.frames) == result.frames_sent
    span = times[-1] - times[0]
    assert abs(len(times) - (span / 0.020 + 1)) <= 3, (len(times), span)
    assert 0.018 <= statistics.median(np.diff(times)) <= 0.022

    # The caller's audio arrived whole and in order, after the greeting had played.
    received = b"".join(f for _, f in edge.frames)
    positions = [frame_aligned_find(received, read_wav(p)[0]) for p in wavs]
    assert -1 < positions[0] < positions[1]
    assert edge.first_voiced_frame_at() >= edge.greeting_end_sent_at

    # Voice-to-voice on the caller's clock brackets the edge's own view of the same gap.
    assert len(result.turns) == len(edge.turns) == 2
    for turn, truth in zip(result.turns, edge.turns, strict=True):
        edge_gap_ms = (truth.first_audio_sent_at - truth.last_voiced_at) * 1000
        v2v = turn.latency.voice_to_voice
        assert v2v is not None
        assert edge_gap_ms <= v2v <= edge_gap_ms + 80, (v2v, edge_gap_ms)
        assert v2v >= edge.endpoint_frames * 20  # the edge waited out its endpoint first
    assert result.ended_by == "caller" and result.ok
    assert [s.reason for s in edge.stops] == ["ended by caller"]
    assert edge.starts[0].sample_rate_hz == 16000


async def test_json_output_and_reply_wavs(
    wavs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, greeting_out = tmp_path / "reply.wav", tmp_path / "greeting.wav"
    async with FakeEdge().running() as edge:
        code = await run_cli(
            [
                "call",
                *map(str, wavs),
                "--json",
                "--url",
                edge.url,
                "--token",
                TOKEN,
                "--out",
                str(out),
                "--greeting-out",
                str(greeting_out),
            ]
        )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    doc = json.loads(captured.out)  # exactly one JSON object
    assert doc["session_id"] == "sess-1" and doc["agent"] == "demo"
    assert doc["greeting"] == "Hello, thanks for calling."
    assert doc["transcript"] == "caller turn 1 caller turn 2"
    assert doc["reply_text"] == "reply number 1 reply number 2"
    assert doc["reply_audio_seconds"] == pytest.approx(2 * 15 * 0.02)
    lat = doc["latency_ms"]
    assert (lat["endpoint"], lat["stt_final"], lat["first_token"], lat["tts_first_audio"]) == (
        200,
        12.5,
        3,
        80,
    )
    assert lat["voice_to_voice"] == pytest.approx(
        statistics.median(t["latency_ms"]["voice_to_voice"] for t in doc["turns"]), abs=0.1
    )
    assert [t["wav"] for t in doc["turns"]] == [str(p) for p in wavs]
    assert [t["transcript"] for t in doc["turns"]] == ["caller turn 1", "caller turn 2"]
    assert [t["reply_audio_seconds"] for t in doc["turns"]] == [0.3, 0.3]
    assert doc["ended_by"] == "caller"

    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    expected = np.concatenate([np.full(15 * 320, reply_value(0)), np.full(15 * 320, reply_value(1))])
    np.testing.assert_array_equal(audio, expected)  # the greeting is not in it
    greeting, _ = read_wav(greeting_out)
    np.testing.assert_array_equal(np.frombuffer(greeting, "<i2"), np.full(10 * 320, GREETING_VALUE))


async def test_human_output(wavs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeEdge().running() as edge:
        code = await run_cli(["call", str(wavs[1]), "--url", edge.url, "--token", TOKEN])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "call sess-1 · agent demo"
    assert out[1] == "agent: Hello, thanks for calling."
    assert out[2].startswith("caller: caller turn 1")
    assert out[3] == "agent: reply number 1"
    assert re.fullmatch(
        r"latency: endpoint 200 ms · stt final 12 ms · first token 3 ms · "
        r"tts first audio 80 ms · voice-to-voice \d+ ms",
        out[4],
    ), out[4]
    assert out[-1] == "call ended by the caller"


async def test_agent_hangup_ends_the_call(wavs: list[Path]) -> None:
    async with FakeEdge(hang_up_after_turns=1).running() as edge:
        result = await place_call(edge.url, TOKEN, wavs)
    assert result.ended_by == "agent" and result.end_reason == "agent hung up"
    assert [t.reply_text for t in result.turns] == ["reply number 1"]
    assert result.unanswered == [str(wavs[1])]
    assert result.ok


async def test_turn_timeout_is_one_error_line_and_exit_1(
    wavs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeEdge(reply=False).running() as edge:
        code = await run_cli(
            ["call", str(wavs[1]), "--url", edge.url, "--token", TOKEN, "--turn-timeout", "0.5"]
        )
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f"voicemesh call: error: turn 1 ({wavs[1]}): "
        "no turn timing from the edge within 0.5 s after the audio ended\n"
    )


async def test_bad_token_is_one_clear_line(wavs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeEdge().running() as edge:
        code = await run_cli(["call", str(wavs[0]), "--url", edge.url, "--token", "wrong"])
        with pytest.raises(CallFailed, match=r"rejected the token \(HTTP 401\)"):
            await place_call(edge.url, "wrong", wavs)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err == (
        f"voicemesh call: error: the media-edge at {edge.url} rejected the token (HTTP 401): "
        "pass --token or set VOICEMESH_EDGE_TOKEN\n"
    )


async def test_unknown_agent_is_refused_with_the_edges_reason(
    wavs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeEdge().running() as edge:
        code = await run_cli(["call", str(wavs[0]), "--url", edge.url, "--token", TOKEN, "--agent", "nobody"])
    assert code == 1
    assert capsys.readouterr().err == (
        "voicemesh call: error: the edge refused the call: unknown_agent: no agent named nobody\n"
    )


def test_no_edge_listening(wavs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/call"
    code = cli(["call", str(wavs[0]), "--url", url, "--token", TOKEN])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"voicemesh call: error: no media-edge at {url} (is `voicemesh up` running?)")
    assert err.count("\n") == 1


def test_bad_wav_is_one_line_and_exit_2(
    tmp_path: Path, wavs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    code = cli(["call", str(wavs[0]), str(bad), "--url", "ws://127.0.0.1:9/v1/call"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == "voicemesh call: error: notes.wav is not a WAV file (no RIFF/WAVE header)\n"


def test_no_local_mesh_says_how_to_start_one(
    tmp_path: Path,
    wavs: list[Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOICEMESH_HOME", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("VOICEMESH_EDGE_URL", raising=False)
    monkeypatch.delenv("VOICEMESH_EDGE_TOKEN", raising=False)
    code = cli(["call", str(wavs[0])])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("voicemesh call: error: no local mesh found") and "voicemesh up" in err


# -- the fake media-edge ------------------------------------------------------------------


FRAME_BYTES = 640
GREETING_VALUE = 7


def reply_value(turn_index: int) -> int:
    """Every sample of the reply to caller turn k (0-based) holds this value."""
    return 1000 * (turn_index + 1)


@dataclass
class TurnLog:
    last_voiced: int
    last_voiced_at: float
    first_audio_sent_at: float = 0.0


@dataclass
class FakeEdge:
    token: str = "secret"
    session_id: str = "sess-1"
    agent: str = "demo"
    greeting_frames: int = 10
    endpoint_frames: int = 10
    think_s: float = 0.05
    reply_frames: int = 15
    reply: bool = True
    hang_up_after_turns: int | None = None
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    turns: list[TurnLog] = field(default_factory=list)
    starts: list[edge_pb2.ClientStart] = field(default_factory=list)
    stops: list[edge_pb2.ClientStop] = field(default_factory=list)
    greeting_end_sent_at: float = 0.0
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/call"

    def first_voiced_frame_at(self) -> float:
        return next(t for t, f in self.frames if _voiced(f))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeEdge]:
        async with serve(
            self._handler, "127.0.0.1", 0, process_request=self._check_auth, compression=None
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self

    def _check_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return conn.respond(HTTPStatus.UNAUTHORIZED, "bad token\n")
        return None

    async def _send(self, ws: ServerConnection, **kind: object) -> None:
        msg = edge_pb2.ServerMessage(**kind)  # type: ignore[arg-type]
        await ws.send(json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None))

    async def _play(
        self,
        ws: ServerConnection,
        rid: str,
        frames: int,
        value: int,
        first: asyncio.Event,
        turn: TurnLog | None = None,
    ) -> None:
        """Marks and audio paced in real time; `first` is set once the first audio is out."""
        await self._send(ws, mark=edge_pb2.PlayoutMark(response_id=rid, name="start"))
        t0 = time.monotonic()
        for i in range(frames):
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
            if turn is not None and i == 0:
                turn.first_audio_sent_at = time.monotonic()
            await ws.send(np.full(320, value, "<i2").tobytes())
            first.set()
        await self._send(ws, mark=edge_pb2.PlayoutMark(response_id=rid, name="end"))

    async def _greet(self, ws: ServerConnection) -> None:
        text = "Hello, thanks for calling."
        await self._send(ws, response=edge_pb2.ResponseText(response_id="g", text=text, final=True))
        await self._play(ws, "g", self.greeting_frames, GREETING_VALUE, asyncio.Event())
        self.greeting_end_sent_at = time.monotonic()

    async def _answer(self, ws: ServerConnection, k: int, turn: TurnLog) -> None:
        tid, rid = f"t{k + 1}", f"r{k + 1}"
        await self._send(ws, state=edge_pb2.StateChanged(state="thinking"))
        await self._send(
            ws, transcript=edge_pb2.TranscriptUpdate(turn_id=tid, text=f"caller turn {k + 1}", final=True)
        )
        for part in ("reply ", f"number {k + 1}"):
            await self._send(ws, response=edge_pb2.ResponseText(response_id=rid, turn_id=tid, text=part))
        await self._send(
            ws,
            response=edge_pb2.ResponseText(
                response_id=rid, turn_id=tid, text=f"reply number {k + 1}", final=True
            ),
        )
        await asyncio.sleep(self.think_s)
        await self._send(ws, state=edge_pb2.StateChanged(state="agent_speaking"))
        first = asyncio.Event()
        play = asyncio.create_task(self._play(ws, rid, self.reply_frames, reply_value(k), first, turn))
        await first.wait()  # the timing goes out once the first reply audio has
        edge_v2v = int((turn.first_audio_sent_at - turn.last_voiced_at) * 1000)
        await self._send(
            ws,
            timing=edge_pb2.TurnTiming(
                turn_id=tid,
                last_voiced_message=turn.last_voiced,
                endpoint_ms=self.endpoint_frames * 20,
                stt_final_ms=12 + k,
                first_token_ms=3,
                tts_first_audio_ms=80,
                edge_voice_to_voice_ms=edge_v2v,
            ),
        )
        await play
        await self._send(ws, state=edge_pb2.StateChanged(state="listening"))
        if self.hang_up_after_turns == k + 1:
            await self._send(ws, end=edge_pb2.CallEnd(reason="agent hung up"))
            await ws.close()

    async def _handler(self, ws: ServerConnection) -> None:
        first = json_format.Parse(await ws.recv(), edge_pb2.ClientMessage())
        self.starts.append(first.start)
        if first.start.agent and first.start.agent != self.agent:
            await self._send(
                ws,
                error=edge_pb2.CallError(code="unknown_agent", message=f"no agent named {first.start.agent}"),
            )
            await ws.close()
            return
        await self._send(
            ws, ready=edge_pb2.CallReady(session_id=self.session_id, agent=self.agent, sample_rate_hz=16000)
        )
        tasks = [asyncio.create_task(self._greet(ws))]
        in_speech, silent, last_voiced, last_voiced_at = False, 0, -1, 0.0
        async for message in ws:
            now = time.monotonic()
            if isinstance(message, str):
                msg = json_format.Parse(message, edge_pb2.ClientMessage())
                if msg.HasField("stop"):
                    self.stops.append(msg.stop)
                    break
                continue
            self.frames.append((now, message))
            index = len(self.frames) - 1
            if _voiced(message):
                in_speech, silent, last_voiced, last_voiced_at = True, 0, index, now
            elif in_speech:
                silent += 1
                if silent >= self.endpoint_frames:
                    in_speech = False
                    turn = TurnLog(last_voiced, last_voiced_at)
                    self.turns.append(turn)
                    if self.reply:
                        tasks.append(asyncio.create_task(self._answer(ws, len(self.turns) - 1, turn)))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _voiced(frame: bytes) -> bool:
    return bool(np.abs(np.frombuffer(frame, "<i2")).max(initial=0) > 500)
