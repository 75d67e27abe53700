"""`voicemesh events SESSION_ID`: the session events of one call, from NATS JetStream.

Reads the `VOICEMESH_SESSIONS` stream from its start, filtered to
`voicemesh.session.<id>.>`, and prints one line per event. Without `--follow` it stops when
no new event has come for about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from voicemesh.mesh.events import STREAM_NAME, SUBJECT_PREFIX, event_name, subject_for
from voicemesh.mesh.urls import nats_inbox_prefix, redact_url
from voicemesh.v1 import events_pb2

from .state import StateError, read_state

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

PROG = "voicemesh events"


class EventsError(RuntimeError):
    """NATS cannot be reached or holds no session stream; the message is one line."""


async def iter_events(
    nats_url: str,
    session_id: str,
    idle_s: float | None = 1.0,
    *,
    connect_timeout_s: float = 3.0,
) -> AsyncIterator[events_pb2.SessionEvent]:
    """Yield the session's events from the first one on. Stops once none has come for
    `idle_s` seconds; with `idle_s=None` follows the session for ever.

    Raises ValueError for a session id that cannot be a subject token, and EventsError when
    NATS is unreachable (or, when following, has no session stream yet).
    """
    from nats.js.errors import NotFoundError

    subject_for(session_id, "x")  # validates the id
    subject = f"{SUBJECT_PREFIX}.{session_id}.>"
    async with jetstream(nats_url, connect_timeout_s) as js:
        try:
            async for event in _read(js, subject, idle_s):
                yield event
        except NotFoundError:
            if idle_s is None:
                raise EventsError(
                    f"NATS at {redact_url(nats_url)} has no {STREAM_NAME} stream yet "
                    "(no service has published an event)"
                ) from None


@contextlib.asynccontextmanager
async def jetstream(nats_url: str, connect_timeout_s: float = 3.0) -> AsyncIterator[JetStreamContext]:
    """JetStream on a connection that fails fast, closed on exit. Raises EventsError (one
    line, the URL's password hidden) when NATS is unreachable or fails: JetStream disabled,
    the connection lost, a credential refused or without the right ...
    `nats.js.errors.NotFoundError` (no such stream) is left to the caller to catch inside."""
    import nats

    shown = redact_url(nats_url)
    seen: list[Exception] = []

    async def keep_error(exc: Exception) -> None:  # instead of nats-py's traceback on stderr
        seen.append(exc)

    try:
        nc = await nats.connect(
            nats_url,
            connect_timeout=connect_timeout_s,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # nats-py: 0 would mean "retry for ever"
            reconnect_time_wait=0.1,
            error_cb=keep_error,
            inbox_prefix=nats_inbox_prefix(nats_url),  # a user may read its own replies only
        )
    except Exception as exc:  # nats raises several unrelated types for one cause
        cause = seen[-1] if seen else exc
        raise EventsError(f"cannot reach NATS at {shown}: {cause or type(cause).__name__}") from None
    try:
        yield nc.jetstream()
    except nats.errors.Error as exc:
        raise EventsError(f"NATS at {shown}: {exc or type(exc).__name__}") from None
    finally:
        await nc.close()


async def _read(
    js: JetStreamContext, subject: str, idle_s: float | None
) -> AsyncIterator[events_pb2.SessionEvent]:
    import nats.errors
    from nats.js.api import DeliverPolicy

    info = await js.stream_info(STREAM_NAME, subjects_filter=subject)
    if idle_s is not None and not (info.state.subjects or {}):
        return  # nothing stored for this session: do not wait for the idle timeout
    sub = await js.subscribe(
        subject,
        stream=STREAM_NAME,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        pending_msgs_limit=4096,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s if idle_s is not None else 1.0)
            except nats.errors.TimeoutError:
                if idle_s is None:
                    continue
                return
            try:
                event = events_pb2.SessionEvent.FromString(msg.data)
            except DecodeError:
                continue  # not a SessionEvent: the publisher is at fault, not this reader
            yield event
    finally:
        await sub.unsubscribe()


async def fetch_events(nats_url: str, session_id: str, idle_s: float = 1.0) -> list[events_pb2.SessionEvent]:
    """Every stored event of the session, oldest first ([] for an unknown session)."""
    return [event async for event in iter_events(nats_url, session_id, idle_s)]


def _payload(event: events_pb2.SessionEvent) -> Message:
    payload: Message = getattr(event, event_name(event))
    return payload


def format_event(event: events_pb2.SessionEvent) -> str:
    """`HH:MM:SS.mmm  service  event  {payload}` with the time in local time."""
    when = datetime.fromtimestamp(event.time.ToNanoseconds() / 1e9)
    payload = json_format.MessageToDict(_payload(event), preserving_proto_field_name=True)
    compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    stamp = when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return f"{stamp}  {event.service:<14} {event_name(event):<18} {compact}"


def event_json(event: events_pb2.SessionEvent) -> dict[str, object]:
    out: dict[str, object] = {"event": event_name(event)}
    out.update(
        json_format.MessageToDict(
            event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )
    return out


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "events",
        help="print the session events of one call (from NATS JetStream)",
        description=(
            "Print every event of one call, oldest first: one line per event "
            "(time, service, event, payload), or JSON lines with --json."
        ),
    )
    p.add_argument("session_id", metavar="SESSION_ID")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--nats-url", help="NATS URL (default: $VOICEMESH_NATS_URL, else the local mesh)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        url = nats_url_from(args)
    except StateError as exc:
        return _fail(str(exc), 1)
    try:
        subject_for(args.session_id, "x")
    except ValueError:
        return _fail(f"{args.session_id!r} is not a session id", 2)
    try:
        count = asyncio.run(_print_events(url, args.session_id, args.follow, args.json))
    except EventsError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    if count == 0:
        return _fail(f"no events for session {args.session_id}", 1)
    return 0


async def _print_events(url: str, session_id: str, follow: bool, as_json: bool) -> int:
    count = 0
    async for event in iter_events(url, session_id, None if follow else 1.0):
        count += 1
        try:
            line = json.dumps(event_json(event), ensure_ascii=False) if as_json else None
            line = line or format_event(event)
        except ValueError:  # an event without a payload: from a newer or broken publisher
            continue
        print(line, flush=True)
    return count


def nats_url_from(args: argparse.Namespace) -> str:
    """--nats-url, else $VOICEMESH_NATS_URL, else the local mesh's (raises StateError)."""
    url: str = args.nats_url or os.environ.get("VOICEMESH_NATS_URL") or read_state().nats_url
    return url


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code
