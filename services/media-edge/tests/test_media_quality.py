"""The RFC 3550 jitter estimator on a virtual clock: arrival times are made up, never read."""

from __future__ import annotations

import pytest

from voicemesh.edge.media_quality import JitterEstimator, frames_in

pytestmark = pytest.mark.unit

FRAME_S = 0.020


def feed(est: JitterEstimator, arrivals: list[float], media: list[float]) -> list[float]:
    """The samples the estimator reports for these packets."""
    samples = []
    for arrived, sent in zip(arrivals, media, strict=True):
        sample = est.arrived(arrived, sent)
        if sample is not None:
            samples.append(sample)
    return samples


def test_packets_as_regular_as_they_were_sent_have_no_jitter_whatever_the_delay() -> None:
    est = JitterEstimator()
    media = [i * FRAME_S for i in range(500)]
    samples = feed(est, [1234.5 + 0.180 + m for m in media], media)  # 180 ms away, steady
    assert samples == [0.0] * 9  # one a second of media: at 1 s, 2 s, ... 9 s
    assert est.jitter_s == 0.0


def test_one_late_packet_moves_the_estimate_by_a_sixteenth_of_its_delay() -> None:
    est = JitterEstimator()
    media = [0.0, 0.020, 0.040, 0.060]
    feed(est, [10.000, 10.020, 10.050, 10.060], media)  # the third is 10 ms late
    # transit 10.00, 10.00, 10.01, 10.00 -> |D| = 0, 0.01, 0.01
    first = 0.01 / 16
    assert est.jitter_s == pytest.approx(first + (0.01 - first) / 16)


def test_alternating_early_and_late_converges_to_the_swing() -> None:
    est = JitterEstimator()
    media = [i * FRAME_S for i in range(2500)]  # 50 s
    arrivals = [5.0 + m + (0.005 if i % 2 else -0.005) for i, m in enumerate(media)]
    samples = feed(est, arrivals, media)
    # |D| is 10 ms on every packet: J -> 10 ms, from below
    assert samples[0] < samples[1] < samples[-1] <= 0.010 + 1e-12
    assert samples[-1] == pytest.approx(0.010, rel=1e-6)


def test_a_sender_that_bursts_shows_jitter_even_if_the_average_rate_is_right() -> None:
    est = JitterEstimator()
    media = [i * FRAME_S for i in range(1000)]
    # five frames at once every 100 ms (a carrier flushing its buffer): |D| is 20 ms four
    # times, then 80 ms: J hovers around their mean, 32 ms
    arrivals = [2.0 + (i // 5) * 0.100 for i in range(1000)]
    samples = feed(est, arrivals, media)
    assert all(0.025 < s < 0.040 for s in samples[3:])


def test_a_jump_in_media_time_gives_one_sample_not_a_burst() -> None:
    est = JitterEstimator()
    media = [i * FRAME_S for i in range(60)] + [6.0 + i * FRAME_S for i in range(10)]
    arrivals = [1.0 + m for m in media]
    assert len(feed(est, arrivals, media)) == 2  # at 1 s, then once at 6 s
    # ... and the next one a full second of media later
    assert est.arrived(1.0 + 6.98, 6.98) is None
    assert est.arrived(1.0 + 7.0, 7.0) is not None


def test_the_first_packet_reports_nothing() -> None:
    est = JitterEstimator(sample_every_s=0.02)
    assert est.arrived(3.0, 0.0) is None
    assert est.arrived(3.02, 0.02) == 0.0


def test_the_sampling_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sample_every_s"):
        JitterEstimator(sample_every_s=0)


@pytest.mark.parametrize(("ms", "frames"), [(-40, 0), (0, 0), (19, 0), (20, 1), (59, 2), (1000, 50)])
def test_lost_and_concealed_audio_counts_in_whole_frames(ms: int, frames: int) -> None:
    assert frames_in(ms) == frames
