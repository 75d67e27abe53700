"""The session events a sink has taken and JetStream has not yet acked (`EventBacklog`), and
the wait between tries of a failed publish (`retry_delay`): the pure part of the publisher in
`events.JetStreamEvents`, which acts on what these return. No I/O, no asyncio, no clock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voicemesh.v1 import events_pb2

# A failed publish is tried again after RETRY_FIRST_S, the wait doubling up to RETRY_MAX_S.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0


def retry_delay(failures: int) -> float:
    """The wait before the next try after `failures` failed publishes in a row (>= 1)."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(max(failures, 1) - 1, 30))


@dataclass(frozen=True)
class Pending:
    """An event taken by a sink, with the JetStream message id every try of it carries."""

    event: events_pb2.SessionEvent
    msg_id: str


@dataclass(frozen=True)
class Outage:
    """What one spell of failed publishes did: events that waited through it (published
    late) and events dropped because the backlog was full."""

    waited: int
    dropped: int


class EventBacklog:
    """The events a sink has taken and JetStream has not yet acked, oldest first, at most
    `limit` (the head, being published, counts). Plain code, no I/O and no clock: the
    publisher acts on what it returns.

    Message ids are `<session>:<sink_id>:<n>`, n counting every event offered (a dropped one
    too), so each event keeps one id across its retries and no two events share one.
    """

    def __init__(self, limit: int, sink_id: str) -> None:
        if limit < 1:
            raise ValueError(f"the event backlog must hold at least 1 event, got {limit}")
        self.limit = limit
        self._sink_id = sink_id
        self._items: deque[Pending] = deque()
        self._seq = 0
        # Failed publishes in a row; while > 0, the tally of the outage.
        self.failures = 0
        self._waited = 0
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, event: events_pb2.SessionEvent) -> bool:
        """Take an event; False when the backlog is full and it is dropped."""
        self._seq += 1
        if len(self._items) >= self.limit:
            self._dropped += 1 if self.failures else 0
            return False
        self._items.append(Pending(event, f"{event.session_id}:{self._sink_id}:{self._seq}"))
        self._waited += 1 if self.failures else 0
        return True

    def head(self) -> Pending | None:
        return self._items[0] if self._items else None

    def failed(self) -> bool:
        """The head's publish failed (it stays); True when this begins an outage."""
        self.failures += 1
        if self.failures == 1:
            self._waited, self._dropped = len(self._items), 0
            return True
        return False

    def acked(self) -> Outage | None:
        """The head is stored: drop it. Returns the outage this ends, if one was on."""
        self._items.popleft()
        if not self.failures:
            return None
        self.failures = 0
        return Outage(self._waited, self._dropped)

    def refused(self) -> Pending:
        """JetStream refused the head for itself (retrying cannot help): drop it."""
        return self._items.popleft()

    def clear(self) -> int:
        """Forget every waiting event; returns how many there were."""
        n = len(self._items)
        self._items.clear()
        return n
