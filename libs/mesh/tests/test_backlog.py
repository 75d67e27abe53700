"""The event backlog's rules, driven directly: the bound, the head kept until acked, one
message id per event, an outage's tally, the retry waits."""

from __future__ import annotations

import pytest

from voicemesh.mesh.backlog import RETRY_MAX_S, EventBacklog, Outage, retry_delay
from voicemesh.v1 import events_pb2

pytestmark = pytest.mark.unit


def test_retry_waits_double_up_to_the_cap() -> None:
    waits = [retry_delay(n) for n in range(1, 12)]
    assert waits[:3] == [0.05, 0.1, 0.2]
    assert waits == sorted(waits) and waits[-1] == RETRY_MAX_S
    assert retry_delay(10_000) == RETRY_MAX_S


def event(session: str, n: int) -> events_pb2.SessionEvent:
    return events_pb2.SessionEvent(
        session_id=session, transcript=events_pb2.TranscriptPublished(utterance_id=f"u{n}")
    )


def test_the_backlog_holds_its_bound_keeps_the_head_until_acked_and_tallies_an_outage() -> None:
    backlog = EventBacklog(3, "edge:edge-0:abc")
    assert [backlog.offer(event("s", n)) for n in range(2)] == [True, True]
    head = backlog.head()
    assert head is not None and head.msg_id == "s:edge:edge-0:abc:1"
    assert backlog.failed() is True  # an outage begins: 2 waiting
    assert backlog.failed() is False
    assert backlog.head() is head  # a failed head is tried again, not skipped
    assert [backlog.offer(event("s", n)) for n in range(2, 5)] == [True, False, False]
    assert len(backlog) == 3
    assert backlog.acked() == Outage(waited=3, dropped=2)
    assert backlog.failures == 0
    ids = []
    while (item := backlog.head()) is not None:
        ids.append(item.msg_id)
        assert backlog.acked() is None
    # Each event keeps one id; a dropped event used up its number, so none is reused.
    assert ids == ["s:edge:edge-0:abc:2", "s:edge:edge-0:abc:3"]
    assert backlog.offer(event("t", 9)) and backlog.head().msg_id == "t:edge:edge-0:abc:6"  # type: ignore[union-attr]
    assert backlog.clear() == 1 and len(backlog) == 0
    with pytest.raises(ValueError, match="at least 1"):
        EventBacklog(0, "x")
