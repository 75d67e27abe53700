"""RTP timing a SIP caller hears: our timestamps and marker bits, and gapless caller audio."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.edge.sip.rtp import Filled, InboundGaps, OutboundTimeline, Stamp, dtmf_packets, round_trip_s

pytestmark = pytest.mark.unit

RATE = 8000
FRAME = 160  # samples in 20 ms at 8 kHz
FRAME_S = 0.020
WRAP = 1 << 32
START = 1_000


def spurt(timeline: OutboundTimeline, *, at: float, frames: int) -> list[Stamp]:
    """`frames` frames sent 20 ms apart from `at`."""
    return [timeline.stamp(at + i * FRAME_S) for i in range(frames)]


# ---- outbound: what we send --------------------------------------------------------------


def test_the_first_frame_carries_the_marker_and_the_initial_timestamp() -> None:
    assert OutboundTimeline(START).stamp(12.5) == Stamp(START, True)


def test_frames_20_ms_apart_step_by_one_frame_without_marker() -> None:
    stamps = spurt(OutboundTimeline(START), at=3.0, frames=50)

    assert [s.timestamp for s in stamps] == [START + i * FRAME for i in range(50)]
    assert [s.marker for s in stamps] == [True] + [False] * 49


def test_after_a_one_second_pause_the_timestamp_runs_on_with_the_wall_clock() -> None:
    timeline = OutboundTimeline(START)
    first = spurt(timeline, at=0.0, frames=10)  # 0.00 … 0.18, the last frame ends at 0.20
    assert first[-1].timestamp == START + 9 * FRAME

    after = spurt(timeline, at=0.20 + 1.0, frames=3)  # one second of silence

    # 1.20 s of wall time since the first frame: what a continuous stream would stamp at
    # 0.20 (START + 1600), plus the second of silence (8000 samples)
    assert after[0] == Stamp(START + 1600 + RATE, True)
    assert after[0].timestamp == START + round(1.20 * RATE)
    assert after[1:] == [Stamp(START + 9600 + FRAME, False), Stamp(START + 9600 + 2 * FRAME, False)]


def test_send_jitter_within_a_spurt_is_not_a_new_spurt() -> None:
    timeline = OutboundTimeline(START)
    sent = [timeline.stamp(t) for t in (0.0, 0.027, 0.035, 0.061, 0.080)]
    assert [s.marker for s in sent] == [True, False, False, False, False]
    assert [s.timestamp for s in sent] == [START + i * FRAME for i in range(5)]


@settings(max_examples=200, deadline=None)
@given(pause=st.floats(min_value=0.061, max_value=120.0), start=st.integers(0, WRAP - 1))
def test_any_pause_is_bridged_by_its_wall_time_to_within_half_a_frame(pause: float, start: int) -> None:
    timeline = OutboundTimeline(start)
    last = spurt(timeline, at=5.0, frames=4)[-1]
    resumed = timeline.stamp(5.0 + 3 * FRAME_S + pause)

    assert resumed.marker
    advanced = (resumed.timestamp - last.timestamp) % WRAP
    assert abs(advanced - pause * RATE) <= FRAME / 2


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, WRAP - 1),
    plan=st.lists(st.tuples(st.integers(1, 30), st.integers(3, 200)), min_size=1, max_size=8),
    jitter=st.lists(st.floats(min_value=-0.004, max_value=0.004), min_size=300, max_size=300),
)
def test_spurts_on_a_20_ms_clock_stamp_their_place_on_it(
    start: int, plan: list[tuple[int, int]], jitter: list[float]
) -> None:
    """Frames sent on 20 ms ticks (a few ms late or early), in spurts of `talk` frames with
    `silent` ticks between them: each stamp is its tick's, each spurt opens with the marker."""
    timeline = OutboundTimeline(start)
    tick, sent = 0, 0
    for talk, silent in plan:
        for i in range(talk):
            stamp = timeline.stamp(10.0 + tick * FRAME_S + jitter[sent % len(jitter)])
            assert stamp == Stamp((start + tick * FRAME) % WRAP, i == 0)
            tick, sent = tick + 1, sent + 1
        tick += silent


def test_the_timestamp_wraps_at_32_bits() -> None:
    timeline = OutboundTimeline(WRAP - FRAME)
    assert [s.timestamp for s in spurt(timeline, at=0.0, frames=3)] == [WRAP - FRAME, 0, FRAME]


def test_a_pause_across_the_wrap_lands_where_the_wall_clock_says() -> None:
    timeline = OutboundTimeline(WRAP - FRAME)
    timeline.stamp(0.0)
    assert timeline.stamp(0.020 + 1.0) == Stamp(RATE, True)


def test_an_initial_timestamp_is_taken_modulo_32_bits() -> None:
    assert OutboundTimeline(WRAP + 7).stamp(0.0).timestamp == 7


# ---- inbound: keeping the caller's audio gapless -----------------------------------------


def feed(gaps: InboundGaps, timestamps: list[int], samples: int = FRAME) -> list[Filled]:
    return [gaps.audio(ts % WRAP, samples) for ts in timestamps]


NOTHING = Filled(0, 0, False)
RESTART = Filled(0, 0, True)


def test_in_order_audio_needs_no_fill() -> None:
    assert feed(InboundGaps(), [START + i * FRAME for i in range(50)]) == [NOTHING] * 50


def test_in_order_packets_of_another_size_need_no_fill() -> None:
    assert feed(InboundGaps(), [START + i * 320 for i in range(10)], samples=320) == [NOTHING] * 10


def test_a_hole_of_three_frames_is_filled_with_three_frames_of_silence() -> None:
    gaps = InboundGaps()
    feed(gaps, [START, START + FRAME])
    assert gaps.audio(START + 5 * FRAME, FRAME) == Filled(3 * FRAME, 3, False)
    assert gaps.audio(START + 6 * FRAME, FRAME) == NOTHING


def test_a_hole_longer_than_a_second_is_filled_only_a_second() -> None:
    gaps = InboundGaps()
    gaps.audio(START, FRAME)
    three_seconds = 3 * RATE
    filled = gaps.audio(START + FRAME + three_seconds, FRAME)
    assert filled.silence_samples == RATE
    assert filled.lost_frames == three_seconds // FRAME
    assert not filled.restarted


def test_a_step_back_restarts_the_timeline_without_fill() -> None:
    gaps = InboundGaps()
    feed(gaps, [START + i * FRAME for i in range(10)])
    assert gaps.audio(START + 2 * FRAME, FRAME) == RESTART
    # the new timeline continues from there with no fill
    assert gaps.audio(START + 3 * FRAME, FRAME) == NOTHING


def test_a_jump_of_more_than_ten_seconds_restarts_without_fill() -> None:
    gaps = InboundGaps()
    gaps.audio(START, FRAME)
    assert gaps.audio(START + FRAME + 11 * RATE, FRAME) == RESTART
    assert gaps.audio(START + 2 * FRAME + 11 * RATE, FRAME) == NOTHING


def test_a_jump_of_less_than_ten_seconds_is_a_hole() -> None:
    gaps = InboundGaps()
    gaps.audio(START, FRAME)
    assert gaps.audio(START + FRAME + 9 * RATE, FRAME) == Filled(RATE, 9 * RATE // FRAME, False)


def test_silence_already_supplied_is_not_filled_again() -> None:
    gaps = InboundGaps()
    gaps.audio(START, FRAME)
    gaps.supplied(3 * FRAME)
    assert gaps.audio(START + 4 * FRAME, FRAME) == NOTHING


def test_a_hole_partly_supplied_is_filled_with_the_rest() -> None:
    gaps = InboundGaps()
    gaps.audio(START, FRAME)
    gaps.supplied(FRAME)
    assert gaps.audio(START + 4 * FRAME, FRAME) == Filled(2 * FRAME, 2, False)


def test_silence_supplied_beyond_the_hole_adds_no_fill() -> None:
    gaps = InboundGaps()
    gaps.audio(START, FRAME)
    gaps.supplied(10 * FRAME)
    assert gaps.audio(START + 4 * FRAME, FRAME).silence_samples == 0


def test_silence_supplied_before_any_audio_does_not_shift_the_first_packet() -> None:
    gaps = InboundGaps()
    gaps.supplied(3 * FRAME)
    assert feed(gaps, [START, START + FRAME]) == [NOTHING, NOTHING]


def test_the_timestamp_wrapping_at_32_bits_is_not_a_hole() -> None:
    gaps = InboundGaps()
    assert feed(gaps, [WRAP - 2 * FRAME, WRAP - FRAME, 0, FRAME]) == [NOTHING] * 4


def test_a_hole_across_the_wrap_is_filled_with_its_length() -> None:
    gaps = InboundGaps()
    gaps.audio(WRAP - FRAME, FRAME)
    assert gaps.audio(2 * FRAME, FRAME) == Filled(2 * FRAME, 2, False)


def test_silence_supplied_across_the_wrap_is_counted() -> None:
    gaps = InboundGaps()
    gaps.audio(WRAP - 2 * FRAME, FRAME)
    gaps.supplied(2 * FRAME)
    assert gaps.audio(FRAME, FRAME) == NOTHING


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, WRAP - 1),
    holes=st.lists(st.integers(0, RATE // FRAME), min_size=1, max_size=40),
)
def test_any_hole_up_to_a_second_is_filled_exactly(start: int, holes: list[int]) -> None:
    gaps = InboundGaps()
    ts = start
    assert gaps.audio(ts, FRAME) == NOTHING
    for missing in holes:
        ts = (ts + (1 + missing) * FRAME) % WRAP
        assert gaps.audio(ts, FRAME) == Filled(missing * FRAME, missing, False)


def test_the_round_trip_is_the_arrival_less_the_report_it_answers_less_the_time_held() -> None:
    sent = (3_900_000_000 << 32) | (1 << 31)  # an NTP time: ….5 s
    lsr = (sent >> 16) & 0xFFFFFFFF
    held = int(0.250 * 65536)  # the caller held our report 250 ms before answering
    arrival = sent + (int(0.290 * (1 << 32)))  # 290 ms after we sent it
    rtt = round_trip_s(arrival, lsr, held)
    assert rtt is not None and abs(rtt - 0.040) < 0.001


def test_no_round_trip_before_the_caller_has_seen_a_report_of_ours() -> None:
    assert round_trip_s(1 << 48, 0, 0) is None


def test_a_report_answered_before_it_was_sent_gives_no_round_trip() -> None:
    sent = 3_900_000_000 << 32
    assert round_trip_s(sent, (sent >> 16) & 0xFFFFFFFF, int(1.0 * 65536)) is None  # clocks moved


def test_a_key_is_telephone_events_every_20_ms_then_its_end_three_times() -> None:
    packets = dtmf_packets("5", tone_ms=100)
    assert [p.at_s for p in packets] == [0.0, 0.02, 0.04, 0.06, 0.08, 0.08, 0.08]
    assert [p.marker for p in packets] == [True] + [False] * 6  # the marker starts the event
    events = [(p.payload[0], p.payload[1] & 0x80, int.from_bytes(p.payload[2:], "big")) for p in packets]
    assert events[:4] == [(5, 0, 160), (5, 0, 320), (5, 0, 480), (5, 0, 640)]
    assert events[4:] == [(5, 0x80, 800)] * 3  # E bit, the whole duration


@pytest.mark.parametrize(("key", "code"), [("*", 10), ("#", 11), ("a", 12), ("D", 15), ("0", 0)])
def test_every_key_has_its_rfc_4733_event_code(key: str, code: int) -> None:
    assert dtmf_packets(key)[0].payload[0] == code


def test_what_is_not_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        dtmf_packets("x")
