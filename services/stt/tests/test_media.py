"""Checking frames and placing them on the media timeline by their sequence numbers."""

from __future__ import annotations

import pytest

from voicemesh.audio import FRAME_BYTES
from voicemesh.stt.media import MAX_FILL_FRAMES, FrameError, Placement, Timeline, check_frame
from voicemesh.v1 import audio_pb2

pytestmark = pytest.mark.unit


def test_the_first_sequence_is_the_base_and_a_run_is_contiguous() -> None:
    timeline = Timeline()
    assert [timeline.place(s) for s in (7, 8, 9)] == [Placement(i, 0, 0) for i in range(3)]


def test_a_gap_leaves_room_for_the_lost_frames() -> None:
    timeline = Timeline()
    timeline.place(0)
    assert timeline.place(4) == Placement(index=4, lost=3, unfilled=0)
    assert timeline.place(5) == Placement(index=5, lost=0, unfilled=0)


def test_a_wild_jump_keeps_room_for_at_most_max_fill_frames() -> None:
    timeline = Timeline()
    timeline.place(0)
    assert timeline.place(1 + 10_000) == Placement(1 + MAX_FILL_FRAMES, 10_000, 10_000 - MAX_FILL_FRAMES)
    assert timeline.place(2 + 10_000) == Placement(2 + MAX_FILL_FRAMES, 0, 0)


def test_a_repeat_or_a_step_back_is_refused_and_changes_nothing() -> None:
    timeline = Timeline()
    timeline.place(10)
    timeline.place(11)
    assert timeline.place(11) is None
    assert timeline.place(3) is None
    assert timeline.place(12) == Placement(2, 0, 0)


def test_check_frame_takes_the_probability_only_with_client_vad() -> None:
    frame = audio_pb2.AudioFrame(pcm=bytes(FRAME_BYTES), speech_probability=0.75)
    assert check_frame(frame, client_vad=True) == 0.75
    assert check_frame(frame, client_vad=False) is None
    frame.speech_probability = float("nan")
    assert check_frame(frame, client_vad=False) is None


@pytest.mark.parametrize("prob", [float("nan"), float("inf"), -0.01, 1.01])
def test_check_frame_refuses_a_probability_outside_0_to_1(prob: float) -> None:
    frame = audio_pb2.AudioFrame(pcm=bytes(FRAME_BYTES), speech_probability=prob)
    with pytest.raises(FrameError, match=r"audio\.speech_probability must be between 0 and 1"):
        check_frame(frame, client_vad=True)


def test_check_frame_refuses_a_frame_of_the_wrong_size() -> None:
    with pytest.raises(FrameError, match=r"audio\.pcm must be 640 bytes"):
        check_frame(audio_pb2.AudioFrame(pcm=bytes(320)), client_vad=False)
