"""Placing calls as Twilio would, against a tiny Media Streams server and action endpoint.

The fake server at the bottom stands in for the edge's /v1/twilio (which has its own tests):
it checks the X-Twilio-Signature with its own HMAC (independent of the code under test),
records every message with its arrival time, plays audio with marks and closes the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from voicemesh.audio.g711 import ulaw_decode, ulaw_encode
from voicemesh.audio.wav import read_wav, write_wav
from voicemesh.cli import call
from voicemesh.cli.carrier_types import EndedBy, TurnOutcome
from voicemesh.cli.twilio_client import StreamRefused, place_twilio_call

pytestmark = pytest.mark.integration

TOKEN = "twilio-auth-token"
TWIML_DIAL = '<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+12025550199</Dial></Response>'


def reference_signature(token: str, url: str) -> str:
    """Twilio's X-Twilio-Signature for a GET (no POST params): base64 HMAC-SHA1 of the URL."""
    return base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def tone(seconds: float, lead_s: float = 0.0, tail_s: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    body = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    pads = [np.zeros(int(s * 16000), np.int16) for s in (lead_s, tail_s)]
    return np.concatenate([pads[0], body, pads[1]])


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "question.wav"
    write_wav(path, tone(0.4).astype("<i2").tobytes())
    return path


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicemesh")
    sub = parser.add_subparsers(required=True)
    call.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


async def test_greeting_plays_its_mark_comes_back_and_the_server_close_ends_the_call(wav: Path) -> None:
    async with FakeTwilioServer(greeting_s=0.5).running() as server:
        result = await place_twilio_call(server.url, TOKEN, [wav], greeting_timeout_s=5.0)

    assert server.signatures_ok == 1
    # The stream opened as Twilio's does and kept its numbering across event types.
    events = [m["event"] for _, m in server.received]
    assert events[:2] == ["connected", "start"] and "stop" not in events
    seqs = [int(m["sequenceNumber"]) for _, m in server.received[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    start = server.received[1][1]["start"]
    assert (start["callSid"], start["streamSid"]) == (result.sids.call_sid, result.sids.stream_sid)
    # Paced like a phone: one 160-byte message every 20 ms, no bursts, no gaps.
    media = [(t, m) for t, m in server.received if m["event"] == "media"]
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for _, m in media)
    times = [t for t, _ in media]
    assert abs(len(times) - ((times[-1] - times[0]) / 0.020 + 1)) <= 3
    assert 0.018 <= statistics.median(np.diff(times)) <= 0.022
    assert result.media_sent - 1 <= len(media) <= result.media_sent  # the last may cross the close

    # The mark came back once the 0.5 s before it had played, not when it arrived.
    (echo,) = result.marks
    assert echo.name == "end:greeting" and not echo.cleared
    assert 0.48 <= echo.returned_at - echo.received_at <= 0.7
    assert server.mark_echo_delay is not None and 0.48 <= server.mark_echo_delay <= 0.75
    # What played is what was sent, whole.
    played = b"".join(c.ulaw for c in result.played)
    assert played == server.greeting_ulaw
    assert len(result.greeting_pcm) == pytest.approx(0.5 * 32000, abs=100)

    assert result.ended_by is EndedBy.SERVER
    assert (result.close_code, result.close_reason) == (1000, "agent hung up")
    # The caller may have begun to speak as the server hung up: either way, not answered.
    assert result.turns[0].outcome in (TurnOutcome.NOT_SPOKEN, TurnOutcome.CUT_OFF)
    assert result.unanswered == [str(wav)]
    assert result.ok and result.action is None


async def test_a_bad_auth_token_is_refused_with_403_and_a_clear_error(wav: Path) -> None:
    async with FakeTwilioServer().running() as server:
        with pytest.raises(StreamRefused, match=r"refused the stream \(HTTP 403\): bad X-Twilio-Signature"):
            await place_twilio_call(server.url, "not-the-token", [wav])
        with pytest.raises(StreamRefused, match=r"HTTP 403.*no auth token"):
            await place_twilio_call(server.url, "", [wav])
    assert server.signatures_ok == 0 and server.refused == 2


async def test_the_signature_covers_the_signed_url_as_written_in_the_twiml(wav: Path) -> None:
    public = "wss://voice.example.com/v1/twilio"
    async with FakeTwilioServer(signed_url=public, greeting_s=0.1).running() as server:
        result = await place_twilio_call(server.url, TOKEN, [wav], signed_url=public, greeting_timeout_s=1)
    assert server.signatures_ok == 1 and result.ended_by is EndedBy.SERVER


async def test_a_reply_then_hangup_runs_the_connect_action(wav: Path) -> None:
    with action_endpoint() as action:
        async with FakeTwilioServer(reply_s=0.3).running() as server:
            result = await place_twilio_call(
                server.url,
                TOKEN,
                [wav],
                custom_parameters={"agent": "demo", "lang": "en"},
                action_url=action.url,
                dtmf={0: "42"},
                greeting_timeout_s=0.0,
            )

    assert server.received[1][1]["start"]["customParameters"] == {"agent": "demo", "lang": "en"}
    assert [m["dtmf"] for _, m in server.received if m["event"] == "dtmf"] == [
        {"track": "inbound_track", "digit": "4"},
        {"track": "inbound_track", "digit": "2"},
    ]
    (turn,) = result.turns
    assert turn.outcome is TurnOutcome.ANSWERED and turn.dtmf == "42"
    assert turn.reply_audio_seconds == pytest.approx(0.3, abs=0.02)
    # Voice-to-voice on the carrier's clock brackets the server's own view of the gap.
    assert server.reply_sent_at is not None and server.last_voiced_at is not None
    server_gap_ms = (server.reply_sent_at - server.last_voiced_at) * 1000
    assert turn.voice_to_voice_ms is not None
    assert server_gap_ms - 10 <= turn.voice_to_voice_ms <= server_gap_ms + 80, (turn, server_gap_ms)

    # After the stream, the action URL got Twilio's GET: parameters in the query, signed.
    (request,) = action.requests
    assert request.signature_ok
    query = dict(parse_qsl(urlsplit(request.path).query))
    assert query == {
        "AccountSid": result.sids.account_sid,
        "CallSid": result.sids.call_sid,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "From": "+12025550101",
        "To": "+12025550102",
    }
    assert result.action is not None
    assert (result.action.status, result.action.body) == (200, TWIML_DIAL)
    assert result.action.content_type.startswith("text/xml")
    assert result.ok


async def test_the_caller_hangs_up_with_stop_after_the_reply_played(wav: Path) -> None:
    async with FakeTwilioServer(reply_s=0.2, hang_up=False).running() as server:
        result = await place_twilio_call(
            server.url,
            TOKEN,
            [wav],
            greeting_timeout_s=0.0,
            hangup_wait_s=0.2,
            action_url="http://x.invalid/",
        )
    (_, stop) = server.received[-1]
    assert stop["event"] == "stop"
    assert stop["stop"] == {"accountSid": result.sids.account_sid, "callSid": result.sids.call_sid}
    assert int(stop["sequenceNumber"]) == len(server.received) - 1  # `connected` has none
    assert result.ended_by is EndedBy.CARRIER and result.close_code is None
    assert result.turns[0].outcome is TurnOutcome.ANSWERED and result.ok
    assert result.action is None and not result.action_error  # the caller hung up: no TwiML after


async def test_a_refused_action_request_is_reported_not_raised(wav: Path) -> None:
    with action_endpoint(token="another-token") as action:
        async with FakeTwilioServer(greeting_s=0.1).running() as server:
            result = await place_twilio_call(server.url, TOKEN, [wav], action_url=action.url)
    assert result.action is not None and result.action.status == 403
    assert not action.requests[0].signature_ok


async def test_voicemesh_call_twilio_prints_per_turn_figures(
    wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEMESH_TWILIO_AUTH_TOKEN", TOKEN)
    out = tmp_path / "reply.wav"
    with action_endpoint() as action:
        async with FakeTwilioServer(reply_s=0.3).running() as server:
            argv = ["call", str(wav), "--twilio", "--url", server.url, "--agent", "demo"]
            argv += [
                "--param",
                "lang=en",
                "--action-url",
                action.url,
                "--no-greeting-wait",
                "--out",
                str(out),
            ]
            code = await asyncio.to_thread(cli, argv)
            text = capsys.readouterr()
            json_code = await asyncio.to_thread(cli, [*argv, "--json"])
            doc = json.loads(capsys.readouterr().out)
    assert code == 0, text.err
    lines = text.out.splitlines()
    call_sid = server.starts[0]["callSid"]
    assert lines[0].startswith(f"twilio call {call_sid} · stream MZ") and lines[0].endswith("· agent demo")
    assert lines[1] == f"transcripts: see `voicemesh events <session>` (the session of callSid {call_sid})"
    turn = next(line for line in lines if line.startswith("turn 1 [question.wav]: "))
    assert "reply 0.3 s · voice-to-voice " in turn and "marks 1 · clears 0" in turn
    assert "call ended by the server (close 1000: agent hung up)" in lines
    assert f"connect action: HTTP 200 {TWIML_DIAL}" in lines
    assert server.starts[0]["customParameters"] == {"lang": "en", "agent": "demo"}
    pcm, info = read_wav(out)
    assert info.sample_rate == 16000 and len(pcm) == pytest.approx(0.3 * 32000, abs=200)

    assert json_code == 0
    assert doc["call_sid"] == server.starts[1]["callSid"] and doc["ended_by"] == "server"
    assert doc["turns"][0]["outcome"] == "answered" and doc["turns"][0]["marks"] == 1
    assert doc["action"]["status"] == 200 and doc["custom_parameters"] == {"lang": "en", "agent": "demo"}


def test_voicemesh_call_twilio_flag_errors(wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "ws://127.0.0.1:9/v1/twilio"
    assert cli(["call", str(wav), "--twilio", "--url", url, "--dtmf", "2:1"]) == 2
    assert "there is no caller turn 2" in capsys.readouterr().err
    assert cli(["call", str(wav), "--param", "a=b", "--url", url]) == 2
    assert capsys.readouterr().err == "voicemesh call: error: --param goes with --twilio\n"


# -- the fake Twilio Media Streams server --------------------------------------------------


@dataclass
class FakeTwilioServer:
    """/v1/twilio: verifies the signature, plays a greeting and/or answers one utterance
    (each followed by a mark), waits for the last mark to come back, then hangs up."""

    greeting_s: float = 0.0
    reply_s: float = 0.0
    hang_up: bool = True  # close once the last mark is back (else wait for the caller's stop)
    signed_url: str = ""
    port: int = 0
    signatures_ok: int = 0
    refused: int = 0
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    starts: list[dict[str, Any]] = field(default_factory=list)
    greeting_ulaw: bytes = b""
    mark_echo_delay: float | None = None
    last_voiced_at: float | None = None
    reply_sent_at: float | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/twilio"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeTwilioServer]:
        async with serve(
            self._handler, "127.0.0.1", 0, process_request=self._check_signature, compression=None
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self

    def _check_signature(self, conn: ServerConnection, request: Request) -> Response | None:
        expected = reference_signature(TOKEN, self.signed_url or self.url)
        given = request.headers.get("X-Twilio-Signature", "")
        if request.path != "/v1/twilio" or not hmac.compare_digest(given, expected):
            self.refused += 1
            return conn.respond(HTTPStatus.FORBIDDEN, "bad signature\n")
        self.signatures_ok += 1
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.received.clear()
        self.last_voiced_at = self.reply_sent_at = None
        sid = ""
        mark_sent_at = 0.0
        waiting_for: str | None = None
        in_speech, silent = False, 0
        async for raw in ws:
            now = time.monotonic()
            msg = json.loads(raw)
            self.received.append((now, msg))
            event = msg["event"]
            if event == "start":
                sid = msg["start"]["streamSid"]
                self.starts.append(msg["start"])
                if self.greeting_s:
                    self.greeting_ulaw = ulaw_encode(
                        np.full(int(self.greeting_s * 8000), 2000, "<i2").tobytes()
                    )
                    await self._play(ws, sid, self.greeting_ulaw, "end:greeting")
                    mark_sent_at, waiting_for = time.monotonic(), "end:greeting"
            elif event == "mark" and msg["mark"]["name"] == waiting_for:
                self.mark_echo_delay = now - mark_sent_at
                if self.hang_up:
                    await ws.close(1000, "agent hung up")
                    return
            elif event == "stop":
                return
            elif event == "media" and self.reply_s and self.reply_sent_at is None:
                samples = np.frombuffer(ulaw_decode(base64.b64decode(msg["media"]["payload"])), "<i2")
                if np.abs(samples).max() > 500:
                    in_speech, silent, self.last_voiced_at = True, 0, now
                elif in_speech and (silent := silent + 1) >= 10:
                    reply = ulaw_encode(np.full(int(self.reply_s * 8000), -2000, "<i2").tobytes())
                    self.reply_sent_at = time.monotonic()
                    await self._play(ws, sid, reply, "end:r1")
                    mark_sent_at, waiting_for = time.monotonic(), "end:r1"

    async def _play(self, ws: ServerConnection, sid: str, ulaw: bytes, mark: str) -> None:
        for i in range(0, len(ulaw), 160):
            payload = base64.b64encode(ulaw[i : i + 160]).decode()
            await ws.send(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}}))
        await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": mark}}))


# -- the fake <Connect action> endpoint ------------------------------------------------------


@dataclass
class ActionRequest:
    path: str
    signature_ok: bool


@dataclass
class ActionEndpoint:
    url: str
    requests: list[ActionRequest]


@contextmanager
def action_endpoint(token: str = TOKEN) -> Iterator[ActionEndpoint]:
    """GET /v1/twilio/connect-action: verifies the signature over the full URL as requested
    (query string included), answers TwiML."""
    requests: list[ActionRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            full = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
            ok = hmac.compare_digest(
                self.headers.get("X-Twilio-Signature", ""), reference_signature(token, full)
            )
            requests.append(ActionRequest(self.path, ok))
            body = (TWIML_DIAL if ok else "forbidden").encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Type", "text/xml; charset=utf-8" if ok else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="action-endpoint", daemon=True)
    thread.start()
    try:
        yield ActionEndpoint(f"http://127.0.0.1:{httpd.server_address[1]}/v1/twilio/connect-action", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
