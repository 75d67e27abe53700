"""The queue between the call's paced playout and aiortc's pulling sender."""

from __future__ import annotations

import pytest

from voicemesh.edge.webrtc.outbound import OutboundQueue

pytestmark = pytest.mark.unit


def frame(n: int) -> bytes:
    return bytes([n]) * 640


def test_frames_come_out_in_order_and_a_mark_after_the_frames_before_it() -> None:
    q = OutboundQueue()
    q.play(frame(1))
    q.play(frame(2))
    assert q.mark("end:r1") is False  # audio is still queued ahead of it
    first = q.pull()
    assert first.pcm == frame(1) and first.marks == []
    second = q.pull()
    assert second.pcm == frame(2) and second.marks == []
    last = q.pull()
    assert last.pcm is None and last.marks == ["end:r1"]


def test_a_mark_with_nothing_queued_is_played_at_once() -> None:
    q = OutboundQueue()
    assert q.mark("end:r1") is True
    assert q.pull() == q.pull()  # nothing queued: no frame, no marks
    assert q.pull().pcm is None


def test_marks_between_frames_come_with_the_frame_after_them() -> None:
    q = OutboundQueue()
    q.play(frame(1))
    q.mark("clause:r1:0")
    q.play(frame(2))
    assert q.pull().marks == []
    pulled = q.pull()
    assert pulled.pcm == frame(2) and pulled.marks == ["clause:r1:0"]


def test_clear_drops_the_audio_and_answers_its_marks() -> None:
    q = OutboundQueue()
    q.play(frame(1))
    q.mark("clause:r1:0")
    q.play(frame(2))
    q.mark("end:r1")
    assert q.clear() == ["clause:r1:0", "end:r1"]
    assert q.frames == 0
    assert q.pull().pcm is None


def test_a_sender_that_stops_pulling_costs_the_oldest_frames_counted() -> None:
    q = OutboundQueue(max_frames=3)
    for n in range(5):
        q.play(frame(n))
    assert q.dropped == 2
    assert [q.pull().pcm for _ in range(3)] == [frame(2), frame(3), frame(4)]


def test_dropping_keeps_the_marks() -> None:
    q = OutboundQueue(max_frames=1)
    q.play(frame(1))
    q.mark("clause:r1:0")
    q.play(frame(2))
    pulled = q.pull()
    assert pulled.pcm == frame(2) and pulled.marks == ["clause:r1:0"]
