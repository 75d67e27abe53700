"""Session events: one `SessionEvent` per thing that happened to a call, published to NATS
JetStream on `voicemesh.session.<session_id>.<event>` (event = the payload field's name).

`emit()` never blocks the call path: events go through a bounded backlog to a publisher task;
when the backlog is full the event is dropped and counted (`voicemesh_dropped_total{what="event"}`).

NATS down: the publisher keeps the event it could not publish and tries it again, with
capped backoff (`backlog.retry_delay`), until JetStream acks it, then goes on in
order; meanwhile events wait in the backlog (`voicemesh_queue_depth{queue="events"}`), so
none is lost within the bound. It logs once when publishing starts failing and once when it
recovers (how many events waited, how many were dropped). Each event carries a
`Nats-Msg-Id` fixed when it was submitted (session, sink, sequence): a publish JetStream
stored but whose ack was lost is not stored again when retried within the stream's
duplicate window (DUPLICATE_WINDOW_S).

`emit()` masks personal data first (`masking.EventMasker`: caller, callee and transfer
target become `[PHONE]` or `[CALLER]`-style tokens, numbers, e-mails and cards in
transcripts, replies and error text become `[KIND]`), so no sink and no service publishes
raw values. On by default; `redact=False` (`VOICEMESH_EVENTS_REDACT=false`) keeps them.
`submit()` takes an event as it is: it is each sink's transport, not for services.

The stream keeps an event `max_age_s` (`VOICEMESH_EVENTS_MAX_AGE_S`, default an hour): the
transcripts in it are gone after that. `ensure_stream` creates it with that age, or sets the
age of one that exists; a service does so at start-up unless the stream is managed by whoever
gave it a publish-only NATS user (the local mesh's supervisor, at `up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from voicemesh.v1 import events_pb2

from .aio import cancel_and_wait
from .backlog import EventBacklog, Pending, retry_delay
from .masking import EventMasker
from .metrics import ServiceMetrics
from .urls import nats_inbox_prefix, redact_url

STREAM_NAME = "VOICEMESH_SESSIONS"
SUBJECT_PREFIX = "voicemesh.session"
DEFAULT_MAX_AGE_S = 3600.0
# JetStream keeps the ids of messages stored this long (never longer than the max age) and
# drops a message whose id it has seen: a retried publish is stored once.
DUPLICATE_WINDOW_S = 600.0
MSG_ID_HEADER = "Nats-Msg-Id"
PUBLISH_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)


def subject_for(session_id: str, event: str) -> str:
    """The NATS subject of one event. Session ids are tokens without dots or wildcards."""
    if not session_id or any(c in session_id for c in ".*> \t\r\n"):
        raise ValueError(f"session id {session_id!r} is not a valid subject token")
    return f"{SUBJECT_PREFIX}.{session_id}.{event}"


def build_event(
    session_id: str, service: str, instance_id: str, wall_time: float, **payload: Message
) -> events_pb2.SessionEvent:
    """A SessionEvent with exactly one payload field set, e.g. `transcript=TranscriptPublished()`."""
    if len(payload) != 1:
        raise ValueError("an event carries exactly one payload")
    ts = Timestamp()
    ts.FromNanoseconds(int(wall_time * 1e9))
    return events_pb2.SessionEvent(
        session_id=session_id, service=service, instance_id=instance_id, time=ts, **payload
    )


def event_name(event: events_pb2.SessionEvent) -> str:
    name = event.WhichOneof("payload")
    if name is None:
        raise ValueError("event has no payload")
    return name


class EventSink(ABC):
    """Where a service sends its session events.

    `redact` (default on) masks personal data in every event `emit` builds; `masker` sets
    what counts as personal (default: every built-in kind).
    """

    def __init__(
        self, service: str, instance_id: str, *, redact: bool = True, masker: EventMasker | None = None
    ) -> None:
        self.service = service
        self.instance_id = instance_id
        self.masker: EventMasker | None = (masker or EventMasker()) if redact else None

    def emit(self, session_id: str, **payload: Message) -> None:
        """Record one event, e.g. `emit(sid, transcript=events_pb2.TranscriptPublished(...))`.

        The payload is copied into the event, so masking never changes the caller's message.
        """
        event = build_event(session_id, self.service, self.instance_id, time.time(), **payload)
        if self.masker is not None:
            self.masker.mask(event)
        self.submit(event)

    @abstractmethod
    def submit(self, event: events_pb2.SessionEvent) -> None:
        """Send one finished event as it is (no masking: `emit` did that)."""


class NullEvents(EventSink):
    def submit(self, event: events_pb2.SessionEvent) -> None:
        return None


@dataclass
class RecordingEvents(EventSink):
    """Keeps events in memory: for tests that check what a service reported (masked, as a
    real sink would publish them, unless `redact=False`)."""

    service: str = "test"
    instance_id: str = "test-0"
    events: list[events_pb2.SessionEvent] = field(default_factory=list)
    redact: bool = field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        EventSink.__init__(self, self.service, self.instance_id, redact=self.redact)

    def submit(self, event: events_pb2.SessionEvent) -> None:
        self.events.append(event)

    def names(self, session_id: str | None = None) -> list[str]:
        return [event_name(e) for e in self.events if session_id is None or e.session_id == session_id]


def _permanent(exc: Exception) -> bool:
    """A publish error that retrying cannot cure (JetStream refused this message itself)."""
    from nats.errors import BadHeaderError, BadSubjectError, MaxPayloadError
    from nats.js.errors import APIError

    if isinstance(exc, (MaxPayloadError, BadSubjectError, BadHeaderError)):
        return True
    return isinstance(exc, APIError) and exc.code is not None and 400 <= int(exc.code) < 500


class JetStreamEvents(EventSink):
    """Publishes to JetStream with acks from a background task fed by a bounded backlog of
    `queue_size` events (the one being published counts); see the module docstring."""

    def __init__(
        self,
        service: str,
        instance_id: str,
        metrics: ServiceMetrics,
        queue_size: int = 4096,
        *,
        redact: bool = True,
        masker: EventMasker | None = None,
    ) -> None:
        super().__init__(service, instance_id, redact=redact, masker=masker)
        self._metrics = metrics
        # The sink id is unique per process: one restarted with the same instance id (pid 1
        # in a container) must not reuse its predecessor's message ids.
        self._backlog = EventBacklog(queue_size, f"{service}:{instance_id}:{uuid.uuid4().hex[:12]}")
        self._has_work = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._manage_stream = False
        self._max_age_s = DEFAULT_MAX_AGE_S
        self._failing_since = 0.0  # monotonic time the current outage began (for its log)
        self._nc: object | None = None
        self._task: asyncio.Task[None] | None = None
        metrics.watch_queue("events", self.backlog)

    def backlog(self) -> int:
        """Events submitted and not yet acked by JetStream."""
        return len(self._backlog)

    async def connect(
        self,
        url: str,
        timeout_s: float = 3.0,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        create_stream: bool = True,
    ) -> None:
        """Connect and (with `create_stream`) make sure the stream exists and keeps events
        `max_age_s`. Raises ConnectionError with a clear reason (the URL's password hidden)."""
        nc = await connect_nats(url, timeout_s)
        js = nc.jetstream()
        if create_stream:
            try:
                await ensure_stream(js, max_age_s)
            except Exception as exc:
                await nc.close()
                raise ConnectionError(f"NATS at {redact_url(url)} has no usable JetStream: {exc}") from None
        self._nc = nc
        self._manage_stream = create_stream
        self._max_age_s = max_age_s
        self._task = asyncio.create_task(self._publish_loop(nc, js), name="events-publisher")

    def submit(self, event: events_pb2.SessionEvent) -> None:
        if not self._backlog.offer(event):
            self._metrics.dropped("event")
            return
        self._empty.clear()
        self._has_work.set()

    async def _publish_loop(self, nc: Any, js: Any) -> None:
        """Publish the backlog's head until acked, then the next: in order, none skipped
        except one JetStream refuses for itself (counted as dropped)."""
        backlog = self._backlog
        while True:
            head = backlog.head()
            if head is None:
                self._empty.set()
                self._has_work.clear()
                await self._has_work.wait()
                continue
            try:
                if not nc.is_connected:  # reconnecting: a publish now would only pile up
                    raise ConnectionError("not connected to NATS (reconnecting)")
                await self._publish(js, head)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.error("event_publish")
                if _permanent(exc):
                    backlog.refused()
                    self._metrics.dropped("event")
                    log.error(
                        "event refused by JetStream",
                        extra={"event": event_name(head.event), "error": str(exc)},
                    )
                    continue
                if backlog.failed():
                    self._failing_since = time.monotonic()
                    log.warning(
                        "event publishing failing; keeping events until NATS is back",
                        extra={"error": str(exc) or type(exc).__name__, "backlog": len(backlog)},
                    )
                await asyncio.sleep(retry_delay(backlog.failures))
                await self._restore_stream(js, exc)
                continue
            outage = backlog.acked()
            if outage is not None:
                log.info(
                    "event publishing recovered",
                    extra={
                        "waited": outage.waited,
                        "dropped": outage.dropped,
                        "outage_s": round(time.monotonic() - self._failing_since, 1),
                    },
                )

    async def _publish(self, js: Any, item: Pending) -> None:
        """One publish, acked by JetStream (a seam for tests that lose an ack)."""
        event = item.event
        await js.publish(
            subject_for(event.session_id, event_name(event)),
            event.SerializeToString(),
            timeout=PUBLISH_TIMEOUT_S,
            headers={MSG_ID_HEADER: item.msg_id},
        )

    async def _restore_stream(self, js: Any, exc: Exception) -> None:
        """No stream answers (a NATS that came back without its store): make it again, if
        this sink manages the stream."""
        from nats.js.errors import NoStreamResponseError

        if self._manage_stream and isinstance(exc, NoStreamResponseError):
            with contextlib.suppress(Exception):
                await ensure_stream(js, self._max_age_s)

    async def close(self, drain_timeout_s: float = 2.0) -> None:
        """Publish what is waiting (up to the timeout), then disconnect. Events still
        unpublished then are counted as dropped."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), drain_timeout_s)
        await cancel_and_wait(self._task)
        self._task = None
        if lost := self._backlog.clear():
            self._metrics.dropped("event", lost)
            log.warning("events not published at close", extra={"count": lost})
            self._empty.set()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()  # type: ignore[attr-defined]


async def connect_nats(url: str, timeout_s: float = 3.0) -> Any:
    """A NATS connection that reconnects for ever, with replies on the user's own inbox.
    Raises ConnectionError naming the server (password hidden) and the cause: a refused
    credential says so rather than timing out unexplained."""
    import nats

    shown = redact_url(url)
    seen: list[Exception] = []
    connected = False

    async def keep_error(exc: Exception) -> None:
        seen.append(exc)
        if connected:  # once connected, nats-py's errors are warnings (a lost server, a refusal)
            log.warning("nats error", extra={"error": str(exc) or type(exc).__name__})

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=timeout_s,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                inbox_prefix=nats_inbox_prefix(url),
                error_cb=keep_error,
            ),
            timeout_s,
        )
    except TimeoutError:
        cause = connect_failure(seen[-1], seen, url) if seen else f"no answer in {timeout_s:.0f} s"
        raise ConnectionError(f"cannot reach NATS at {shown}: {cause}") from None
    except Exception as exc:  # nats raises several unrelated types for one cause
        raise ConnectionError(f"cannot reach NATS at {shown}: {connect_failure(exc, seen, url)}") from None
    connected = True
    return nc


def connect_failure(exc: Exception, seen: list[Exception], url: str) -> str:
    """Why a NATS connect failed, as a person can act on it. The server refuses credentials
    with -ERR 'Authorization Violation' and closes the socket; the client may meet the reset
    before it has read the -ERR (then only the reset is left to say)."""
    refused = [e for e in seen if "authorization" in str(e).lower()]
    if refused:
        return str(refused[-1])
    cause = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionResetError) or "reset by peer" in cause:
        if urlsplit(url).username:
            return f"{cause} (the server closes a connection whose authorization it refuses: check the user and password)"
    return cause


def stream_config(max_age_s: float = DEFAULT_MAX_AGE_S) -> Any:
    """The session stream: every event subject, each message kept `max_age_s`, message ids
    remembered DUPLICATE_WINDOW_S (at most the max age: JetStream allows no more)."""
    from nats.js.api import StreamConfig

    if max_age_s <= 0:
        raise ValueError(f"the events' max age must be > 0 s, got {max_age_s}")
    return StreamConfig(
        name=STREAM_NAME,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        max_age=max_age_s,
        duplicate_window=min(DUPLICATE_WINDOW_S, max_age_s),
    )


async def ensure_stream(js: Any, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
    """Create the session stream, or give an existing one this retention (events older
    than `max_age_s` are dropped at once) and duplicate window."""
    from nats.js.errors import NotFoundError

    config = stream_config(max_age_s)
    try:
        info = await js.stream_info(STREAM_NAME)
    except NotFoundError:
        await js.add_stream(config)
        return
    window = float(info.config.duplicate_window or 0)
    if (
        info.config.max_age != config.max_age
        or list(info.config.subjects or []) != config.subjects
        or abs(window - config.duplicate_window) > 1e-3
    ):
        await js.update_stream(config)
