"""`voicemesh calls`: events -> rows -> text on their own, then the command against a real
nats-server with JetStream, fed by JetStreamEvents."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from google.protobuf.message import Message

from voicemesh.cli import main as cli_main
from voicemesh.cli.calls_cmd import (
    CallRow,
    calls_from_events,
    fetch_call_events,
    format_header,
    format_row,
    human_duration,
    row_json,
)
from voicemesh.mesh.events import STREAM_NAME, JetStreamEvents, build_event, event_name
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import events_pb2

T0 = datetime(2025, 3, 12, 12, 0, 0, tzinfo=UTC)


def at(session_id: str, when: datetime, **payload: Message) -> events_pb2.SessionEvent:
    return build_event(session_id, "media-edge", "edge-0", when.timestamp(), **payload)


def started(session_id: str, when: datetime, **fields: str) -> events_pb2.SessionEvent:
    return at(session_id, when, call_started=events_pb2.CallStarted(**fields))


def ended(session_id: str, when: datetime, reason: str, duration_ms: int) -> events_pb2.SessionEvent:
    return at(
        session_id, when, call_ended=events_pb2.CallEnded(reason=reason, duration_ms=duration_ms, turns=2)
    )


def transferred(session_id: str, when: datetime, target: str) -> events_pb2.SessionEvent:
    return at(session_id, when, call_transferred=events_pb2.CallTransferred(target=target, method="native"))


def three_calls(t0: datetime, ids: tuple[str, str, str]) -> list[events_pb2.SessionEvent]:
    """`ids[0]` ended by the agent after 64 s, `ids[1]` transferred, `ids[2]` still live;
    each starts later than the one before."""
    agent_ended, handed_on, live = ids
    return [
        started(
            agent_ended,
            t0,
            transport="twilio",
            agent="restaurant",
            caller="+14155550100",
            callee="+14155550199",
            carrier_call_id="CA123",
        ),
        at(agent_ended, t0 + timedelta(seconds=3), transcript=events_pb2.TranscriptPublished(text="hi")),
        started(
            handed_on,
            t0 + timedelta(seconds=30),
            transport="sip",
            agent="clinic",
            caller="sip:ann@example.org",
        ),
        ended(agent_ended, t0 + timedelta(seconds=64), "agent", 64_250),
        transferred(handed_on, t0 + timedelta(seconds=80), "+14155550111"),
        ended(handed_on, t0 + timedelta(seconds=81), "transfer", 51_000),
        started(live, t0 + timedelta(seconds=100), transport="websocket", agent="restaurant"),
    ]


# -- the pure part ----------------------------------------------------------------------------


@pytest.mark.unit
def test_rows_are_newest_first_with_how_each_call_ended() -> None:
    now = T0 + timedelta(seconds=130)
    rows = calls_from_events(three_calls(T0, ("a", "b", "c")), now)
    assert [r.session_id for r in rows] == ["c", "b", "a"]
    live, handed_on, agent_ended = rows
    assert live.live and live.ended is None and live.transferred_to is None
    assert live.duration_ms == 30_000, "a live call's duration runs to now"
    assert (handed_on.ended, handed_on.transferred_to, handed_on.duration_ms) == (
        "transfer",
        "+14155550111",
        51_000,
    )
    assert agent_ended == CallRow(
        session_id="a",
        transport="twilio",
        agent="restaurant",
        caller="+14155550100",
        callee="+14155550199",
        carrier_call_id="CA123",
        started_at=T0,
        duration_ms=64_250,
        ended="agent",
        transferred_to=None,
    )


@pytest.mark.unit
def test_limit_keeps_the_newest() -> None:
    rows = calls_from_events(three_calls(T0, ("a", "b", "c")), T0 + timedelta(minutes=5), limit=2)
    assert [r.session_id for r in rows] == ["c", "b"]


@pytest.mark.unit
def test_a_call_whose_start_aged_out_starts_at_end_minus_duration() -> None:
    rows = calls_from_events([ended("x", T0, "caller", 90_000)], T0)
    assert rows[0].started_at == T0 - timedelta(seconds=90)
    assert (rows[0].transport, rows[0].caller, rows[0].ended) == ("", "", "caller")


@pytest.mark.unit
def test_a_start_recorded_after_now_does_not_run_backwards() -> None:
    (row,) = calls_from_events([started("x", T0 + timedelta(seconds=2))], T0)
    assert row.duration_ms == 0


@pytest.mark.unit
def test_no_call_events_no_rows() -> None:
    assert calls_from_events([at("x", T0, speech_started=events_pb2.SpeechStarted(audio_ms=3))], T0) == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (999, "0s"),
        (45_000, "45s"),
        (64_250, "1m 04s"),
        (3_599_999, "59m 59s"),
        (3_725_000, "1h 02m"),
    ],
)
def test_human_durations(ms: int, text: str) -> None:
    assert human_duration(ms) == text


@pytest.mark.unit
def test_table_lines_have_fixed_columns() -> None:
    rows = calls_from_events(three_calls(T0, ("a" * 32, "b" * 32, "c" * 32)), T0 + timedelta(seconds=130))
    lines = [format_header(), *(format_row(r, UTC) for r in rows)]
    assert lines == [
        "SESSION                           TRANSPORT   FROM              TO                STARTED              DURATION  ENDED",
        "c" * 32 + "  websocket   -                 -                 2025-03-12 12:01:40       30s  live",
        "b" * 32
        + "  sip         sip:ann@example…  -                 2025-03-12 12:00:30       51s  transfer -> +14155550111",
        "a" * 32 + "  twilio      +14155550100      +14155550199      2025-03-12 12:00:00    1m 04s  agent",
    ]


@pytest.mark.unit
def test_start_time_is_shown_in_the_given_time_zone() -> None:
    from zoneinfo import ZoneInfo

    (row,) = calls_from_events([started("x", T0)], T0)
    assert "2025-03-12 13:00:00" in format_row(row, ZoneInfo("Europe/Rome"))


@pytest.mark.unit
def test_json_object_of_a_row() -> None:
    rows = calls_from_events(three_calls(T0, ("a", "b", "c")), T0 + timedelta(seconds=130))
    assert [row_json(r) for r in rows[1:]] == [
        {
            "session_id": "b",
            "transport": "sip",
            "agent": "clinic",
            "from": "sip:ann@example.org",
            "to": "",
            "carrier_call_id": "",
            "started_at": "2025-03-12T12:00:30.000Z",
            "duration_ms": 51_000,
            "ended": "transfer",
            "transferred_to": "+14155550111",
        },
        {
            "session_id": "a",
            "transport": "twilio",
            "agent": "restaurant",
            "from": "+14155550100",
            "to": "+14155550199",
            "carrier_call_id": "CA123",
            "started_at": "2025-03-12T12:00:00.000Z",
            "duration_ms": 64_250,
            "ended": "agent",
            "transferred_to": None,
        },
    ]
    assert row_json(rows[0])["ended"] is None


# -- against a real NATS ----------------------------------------------------------------------


async def stored(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME)
        return int(info.state.messages)
    finally:
        await nc.close()


@pytest.fixture
async def sink(nats_url: str) -> AsyncIterator[JetStreamEvents]:
    events = JetStreamEvents("media-edge", "edge-0", ServiceMetrics.create("media-edge"))
    await events.connect(nats_url)
    try:
        yield events
    finally:
        await events.close()


async def publish(url: str, sink: JetStreamEvents, events: list[events_pb2.SessionEvent]) -> None:
    """Submit the events and wait until JetStream holds them all."""
    before = await stored(url)
    for event in events:
        sink.submit(event)
    deadline = time.monotonic() + 5
    while await stored(url) < before + len(events):
        assert time.monotonic() < deadline, "events never reached the stream"
        await asyncio.sleep(0.02)


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(argv)
    return int(exit_info.value.code or 0)


def fresh_ids() -> tuple[str, str, str]:
    """Session ids of this test only: the session's NATS holds other tests' calls too."""
    return (uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex)


@pytest.mark.integration
async def test_fetch_reads_only_the_call_events(nats_url: str, sink: JetStreamEvents) -> None:
    ids = fresh_ids()
    await publish(nats_url, sink, three_calls(datetime.now(UTC), ids))
    events = [e for e in await fetch_call_events(nats_url) if e.session_id in ids]
    assert [event_name(e) for e in events] == [
        "call_started",  # the transcript between is not delivered
        "call_started",
        "call_ended",
        "call_transferred",
        "call_ended",
        "call_started",
    ]


@pytest.mark.integration
async def test_command_lists_three_calls_newest_first(
    nats_url: str, sink: JetStreamEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fresh_ids()
    agent_ended, handed_on, live = ids
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)  # whole seconds: exact
    await publish(nats_url, sink, three_calls(t0, ids))

    code = await asyncio.to_thread(run_cli, ["calls", "--json", "--limit", "1000", "--nats-url", nats_url])
    out = capsys.readouterr().out
    assert code == 0
    docs = [d for d in json.loads(out) if d["session_id"] in ids]
    assert [d["session_id"] for d in docs] == [live, handed_on, agent_ended]
    assert docs[0]["ended"] is None and docs[0]["transport"] == "websocket"
    assert 20_000 <= docs[0]["duration_ms"] < 600_000, "a live call runs from its start to now"
    assert (docs[1]["ended"], docs[1]["transferred_to"], docs[1]["from"]) == (
        "transfer",
        "+14155550111",
        "sip:ann@example.org",
    )
    assert docs[2] == {
        "session_id": agent_ended,
        "transport": "twilio",
        "agent": "restaurant",
        "from": "+14155550100",
        "to": "+14155550199",
        "carrier_call_id": "CA123",
        "started_at": t0.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "duration_ms": 64_250,
        "ended": "agent",
        "transferred_to": None,
    }

    code = await asyncio.to_thread(run_cli, ["calls", "--limit", "1000", "--nats-url", nats_url])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].startswith("SESSION") and lines[0].endswith("ENDED")
    mine = [line for line in lines if line[:32] in ids]
    assert [line[:32] for line in mine] == [live, handed_on, agent_ended]
    assert mine[0].endswith("  live")
    assert mine[2].split()[-2:] == ["04s", "agent"]


@pytest.mark.unit
def test_bad_limit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-3", "ten"):
        assert run_cli(["calls", "--limit", bad]) == 2
        err = capsys.readouterr().err
        assert "argument --limit" in err and bad in err


@pytest.mark.integration
async def test_unreachable_nats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code = await asyncio.to_thread(run_cli, ["calls", "--nats-url", url])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"voicemesh calls: error: cannot reach NATS at {url}")
    assert err.count("\n") == 1
