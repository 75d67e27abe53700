"""`voicemesh events` against a real nats-server with JetStream, fed by JetStreamEvents."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from voicemesh.cli import events_cmd
from voicemesh.cli.events_cmd import EventsError, fetch_events, iter_events
from voicemesh.mesh.events import STREAM_NAME, JetStreamEvents, event_name
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import events_pb2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nats_at(nats_url: str) -> str:
    """The session's real nats-server with JetStream (the repository's root conftest)."""
    return nats_url


async def stored(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME)
        return int(info.state.messages)
    finally:
        await nc.close()


@pytest.fixture
async def sink(nats_at: str) -> AsyncIterator[JetStreamEvents]:
    events = JetStreamEvents("media-edge", "edge-0", ServiceMetrics.create("media-edge"))
    await events.connect(nats_at)
    try:
        yield events
    finally:
        await events.close()


async def publish(url: str, sink: JetStreamEvents, emits: list[tuple[str, dict]]) -> None:
    """Emit events and wait until JetStream holds them all."""
    before = await stored(url)
    for session_id, payload in emits:
        sink.emit(session_id, **payload)
    deadline = time.monotonic() + 5
    while await stored(url) < before + len(emits):
        assert time.monotonic() < deadline, "events never reached the stream"
        await asyncio.sleep(0.02)


def call_of(session_id: str) -> list[tuple[str, dict]]:
    return [
        (session_id, {"call_started": events_pb2.CallStarted(transport="websocket", agent="demo")}),
        (
            session_id,
            {"transcript": events_pb2.TranscriptPublished(utterance_id="u1", text="hi there", final=True)},
        ),
        (
            session_id,
            {"turn_latency": events_pb2.TurnLatency(turn_id="t1", endpoint_ms=500, voice_to_voice_ms=612)},
        ),
        (
            session_id,
            {"call_ended": events_pb2.CallEnded(reason="caller hung up", duration_ms=4200, turns=1)},
        ),
    ]


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicemesh")
    sub = parser.add_subparsers(required=True)
    events_cmd.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


async def test_fetch_events_returns_one_sessions_events_in_order(nats_at: str, sink: JetStreamEvents) -> None:
    await publish(nats_at, sink, call_of("call-a") + call_of("call-b")[:2])
    events = await fetch_events(nats_at, "call-a", idle_s=0.3)
    assert [event_name(e) for e in events] == [
        "call_started",
        "transcript",
        "turn_latency",
        "call_ended",
    ]
    assert {e.session_id for e in events} == {"call-a"}
    assert events[2].turn_latency.voice_to_voice_ms == 612
    assert events[0].service == "media-edge" and events[0].instance_id == "edge-0"


async def test_unknown_session_has_no_events_and_does_not_wait(nats_at: str, sink: JetStreamEvents) -> None:
    await publish(nats_at, sink, call_of("call-c")[:1])
    started = time.monotonic()
    assert await fetch_events(nats_at, "no-such-call", idle_s=5.0) == []
    assert time.monotonic() - started < 2.0


async def test_follow_yields_events_as_they_are_published(nats_at: str, sink: JetStreamEvents) -> None:
    await publish(nats_at, sink, call_of("call-f")[:2])
    seen: list[str] = []
    stream = iter_events(nats_at, "call-f", idle_s=None)
    async with asyncio.timeout(10):
        async for event in stream:
            seen.append(event_name(event))
            if len(seen) == 2:  # caught up: the call goes on
                sink.emit("call-f", call_ended=events_pb2.CallEnded(reason="agent hung up"))
            if len(seen) == 3:
                break
    await stream.aclose()
    assert seen == ["call_started", "transcript", "call_ended"]


async def test_command_prints_one_line_per_event(
    nats_at: str, sink: JetStreamEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish(nats_at, sink, call_of("call-d"))
    code = await asyncio.to_thread(cli, ["events", "call-d", "--nats-url", nats_at])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 4
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3}  media-edge +call_started +"
        r'\{"transport":"websocket","agent":"demo"\}',
        lines[0],
    ), lines[0]
    assert lines[3].split()[2] == "call_ended"


async def test_command_json_lines(
    nats_at: str, sink: JetStreamEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish(nats_at, sink, call_of("call-j"))
    code = await asyncio.to_thread(cli, ["events", "call-j", "--json", "--nats-url", nats_at])
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [d["event"] for d in docs] == ["call_started", "transcript", "turn_latency", "call_ended"]
    assert docs[1]["transcript"] == {"utterance_id": "u1", "text": "hi there", "final": True, "decode_ms": 0}
    assert docs[0]["session_id"] == "call-j" and docs[0]["service"] == "media-edge"


def test_command_unknown_session(nats_at: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["events", "ghost", "--nats-url", nats_at])
    assert code == 1
    assert capsys.readouterr().err == "voicemesh events: error: no events for session ghost\n"


def test_command_bad_session_id(nats_at: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["events", "a.b", "--nats-url", nats_at])
    assert code == 2
    assert capsys.readouterr().err == "voicemesh events: error: 'a.b' is not a session id\n"


async def test_unreachable_nats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(EventsError, match=f"cannot reach NATS at {url}"):
        await fetch_events(url, "call-a")
    code = await asyncio.to_thread(cli, ["events", "call-a", "--nats-url", url])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"voicemesh events: error: cannot reach NATS at {url}")
    assert err.count("\n") == 1
