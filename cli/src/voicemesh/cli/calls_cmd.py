"""`voicemesh calls`: the recent calls, newest first, from the session events in NATS.

Reads only the `call_started`, `call_ended` and `call_transferred` subjects of the
`VOICEMESH_SESSIONS` stream (one consumer with three filter subjects) up to the end of
what is stored when the command starts, and folds them into one row per call. A call with
no `call_ended` yet is live; its duration runs to now.

The pure part (`calls_from_events`, `format_table`, `row_json`) takes events and a clock
reading and returns rows and text; the NATS part only fetches the events.

Phone numbers and transfer targets are personal data: this command prints them (operators
need them) and never logs them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from voicemesh.mesh.events import STREAM_NAME, SUBJECT_PREFIX
from voicemesh.v1 import events_pb2

from .events_cmd import EventsError, jetstream, nats_url_from
from .state import StateError

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

PROG = "voicemesh calls"
DEFAULT_LIMIT = 20
CALL_EVENTS = ("call_started", "call_ended", "call_transferred")
CALL_SUBJECTS = tuple(f"{SUBJECT_PREFIX}.*.{name}" for name in CALL_EVENTS)
LIVE = "live"


# -- the pure part: events -> rows -> text ---------------------------------------------------


@dataclass(frozen=True)
class CallRow:
    """One call as an operator sees it. `caller`, `callee` and `transferred_to` are personal
    data. Strings the events did not carry are empty."""

    session_id: str
    transport: str
    agent: str
    caller: str
    callee: str
    carrier_call_id: str
    started_at: datetime  # aware, UTC
    duration_ms: int  # a live call's runs to the time the rows were made
    ended: str | None  # the end reason; None while the call is live
    transferred_to: str | None

    @property
    def live(self) -> bool:
        return self.ended is None


@dataclass
class _Call:
    started: events_pb2.SessionEvent | None = None
    ended: events_pb2.SessionEvent | None = None
    transferred: events_pb2.SessionEvent | None = None


def _time(event: events_pb2.SessionEvent) -> datetime:
    return event.time.ToDatetime(tzinfo=UTC)


def calls_from_events(
    events: Iterable[events_pb2.SessionEvent], now: datetime, limit: int | None = None
) -> list[CallRow]:
    """One row per session that has a call event, newest start first, at most `limit`.

    Other events are ignored. The first `call_started` and `call_ended` of a session count,
    the last `call_transferred`. A call whose `call_started` is gone (it aged out of the
    stream first) starts at its end time minus its duration.
    """
    calls: dict[str, _Call] = {}
    for event in events:
        kind = event.WhichOneof("payload")
        if kind not in CALL_EVENTS:
            continue
        call = calls.setdefault(event.session_id, _Call())
        if kind == "call_started" and call.started is None:
            call.started = event
        elif kind == "call_ended" and call.ended is None:
            call.ended = event
        elif kind == "call_transferred":
            call.transferred = event
    rows = [_row(session_id, call, now) for session_id, call in calls.items()]
    rows.sort(key=lambda r: (r.started_at, r.session_id), reverse=True)
    return rows if limit is None else rows[:limit]


def _row(session_id: str, call: _Call, now: datetime) -> CallRow:
    info = call.started.call_started if call.started is not None else events_pb2.CallStarted()
    if call.ended is not None:
        duration_ms = call.ended.call_ended.duration_ms
        ended: str | None = call.ended.call_ended.reason
    else:
        duration_ms, ended = 0, None
    if call.started is not None:
        started_at = _time(call.started)
    elif call.ended is not None:
        started_at = _time(call.ended) - timedelta(milliseconds=duration_ms)
    else:
        assert call.transferred is not None, "a call is made from one of its events"
        started_at = _time(call.transferred)
    if ended is None:
        duration_ms = max(0, round((now - started_at) / timedelta(milliseconds=1)))
    return CallRow(
        session_id=session_id,
        transport=info.transport,
        agent=info.agent,
        caller=info.caller,
        callee=info.callee,
        carrier_call_id=info.carrier_call_id,
        started_at=started_at,
        duration_ms=duration_ms,
        ended=ended,
        transferred_to=call.transferred.call_transferred.target if call.transferred is not None else None,
    )


def human_duration(ms: int) -> str:
    """`45s`, `1m 04s`, `2h 05m` (whole seconds, rounded down)."""
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def how_it_ended(row: CallRow) -> str:
    """`live`, the end reason, and the transfer target when the call was handed on."""
    text = LIVE if row.ended is None else (row.ended or "?")
    if row.transferred_to is not None:
        text += f" -> {row.transferred_to or '?'}"
    return text


# Width of each column but the last; session ids (uuid hex) are never cut, so they can be
# passed to `voicemesh events`; longer values of the other columns are cut with "…".
_COLUMNS = (("SESSION", 32), ("TRANSPORT", 10), ("FROM", 16), ("TO", 16), ("STARTED", 19), ("DURATION", 8))


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_row(row: CallRow, tz: tzinfo | None = None) -> str:
    """One table line; the start time in `tz` (default: the local time zone)."""
    started = row.started_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    (_, w_sid), (_, w_tr), (_, w_from), (_, w_to), (_, w_st), (_, w_dur) = _COLUMNS
    return "  ".join(
        (
            f"{row.session_id:<{w_sid}}",
            f"{_cell(row.transport or '-', w_tr):<{w_tr}}",
            f"{_cell(row.caller or '-', w_from):<{w_from}}",
            f"{_cell(row.callee or '-', w_to):<{w_to}}",
            f"{started:<{w_st}}",
            f"{human_duration(row.duration_ms):>{w_dur}}",
            how_it_ended(row),
        )
    )


def format_header() -> str:
    cells = [f"{name:>{width}}" if name == "DURATION" else f"{name:<{width}}" for name, width in _COLUMNS]
    return "  ".join((*cells, "ENDED"))


def format_table(rows: Iterable[CallRow], tz: tzinfo | None = None) -> list[str]:
    return [format_header(), *(format_row(row, tz) for row in rows)]


def iso_utc(when: datetime) -> str:
    """`2025-03-12T12:00:30.000Z`."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_json(row: CallRow) -> dict[str, object]:
    return {
        "session_id": row.session_id,
        "transport": row.transport,
        "agent": row.agent,
        "from": row.caller,
        "to": row.callee,
        "carrier_call_id": row.carrier_call_id,
        "started_at": iso_utc(row.started_at),
        "duration_ms": row.duration_ms,
        "ended": row.ended,
        "transferred_to": row.transferred_to,
    }


# -- reading NATS --------------------------------------------------------------------------


async def fetch_call_events(
    nats_url: str, *, connect_timeout_s: float = 3.0, idle_s: float = 2.0
) -> list[events_pb2.SessionEvent]:
    """The stored call_started / call_ended / call_transferred events, oldest first, up to
    the last one stored when this started ([] when there is no session stream yet).

    `idle_s` only guards against a stream that stops delivering; the read ends on the
    consumer's own count of what is pending. Raises EventsError (one line) when NATS is
    unreachable or fails.
    """
    from nats.js.errors import NotFoundError

    async with jetstream(nats_url, connect_timeout_s) as js:
        try:
            return [event async for event in _read_calls(js, idle_s)]
        except NotFoundError:
            return []


async def _read_calls(js: JetStreamContext, idle_s: float) -> AsyncIterator[events_pb2.SessionEvent]:
    import nats.errors
    from nats.js.api import ConsumerConfig, DeliverPolicy

    info = await js.stream_info(STREAM_NAME)
    last_seq = info.state.last_seq
    if not info.state.messages:
        return
    sub = await js.subscribe(
        CALL_SUBJECTS[0],  # unused: filter_subjects wins
        stream=STREAM_NAME,
        ordered_consumer=True,
        config=ConsumerConfig(filter_subjects=list(CALL_SUBJECTS), deliver_policy=DeliverPolicy.ALL),
        pending_msgs_limit=65536,
    )
    try:
        consumer = await sub.consumer_info()
        if not consumer.num_pending and not (consumer.delivered and consumer.delivered.consumer_seq):
            return  # no call events stored: do not wait for the idle timeout
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except nats.errors.TimeoutError:
                return
            meta = msg.metadata
            try:
                event = events_pb2.SessionEvent.FromString(msg.data)
            except DecodeError:
                event = None  # not a SessionEvent: the publisher is at fault, not this reader
            if event is not None:
                yield event
            if meta.num_pending == 0 or meta.sequence.stream >= last_seq:
                return
    finally:
        await sub.unsubscribe()


# -- the command ---------------------------------------------------------------------------


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "calls",
        help="list the recent calls, newest first (from NATS JetStream)",
        description=(
            "List the recent calls, newest first: session id, transport, caller, callee, "
            "start time (local), duration and how the call ended ('live' while it goes on). "
            "--json prints every field in full."
        ),
    )
    p.add_argument("--json", action="store_true", help="a JSON array of objects")
    p.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N calls (default {DEFAULT_LIMIT})",
    )
    p.add_argument("--nats-url", help="NATS URL (default: $VOICEMESH_NATS_URL, else the local mesh)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        url = nats_url_from(args)
    except StateError as exc:
        return _fail(str(exc), 1)
    try:
        events = asyncio.run(fetch_call_events(url))
    except EventsError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    rows = calls_from_events(events, datetime.now(UTC), args.limit)
    if args.json:
        print(json.dumps([row_json(row) for row in rows], indent=2, ensure_ascii=False))
    elif not rows:
        print("no calls recorded", file=sys.stderr)
    else:
        print("\n".join(format_table(rows)))
    return 0


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code
