from __future__ import annotations

import pytest

from voicemesh.edge.playout import PlayoutClock

pytestmark = pytest.mark.unit


def test_frames_are_due_every_20_ms_after_a_small_lead() -> None:
    clock = PlayoutClock(lead_frames=2)
    now = 100.0
    sends = []
    for _ in range(6):
        due = clock.due(now)
        now = max(now, due)
        sends.append(round(now - 100.0, 3))
        clock.sent()
    # two frames at once, then one per 20 ms: the caller is always 40 ms ahead at most
    assert sends == [0.0, 0.0, 0.04, 0.06, 0.08, 0.1]


def test_a_dry_queue_restarts_the_schedule_instead_of_bursting() -> None:
    clock = PlayoutClock(lead_frames=0)
    assert clock.due(10.0) == 10.0
    clock.sent()
    # nothing to play for a second: the next frame is not "late by 49 frames"
    assert clock.due(11.0) == 11.0
    clock.sent()
    assert clock.due(11.0) == pytest.approx(11.02)
