"""The SIP caller's jitter buffer, on a virtual clock: a sender, a network with seeded delay,
loss, reordering and duplication, and the 20 ms playout tick, all simulated. Each test says
what the caller's audio would be: which frames reached the call, which were made up, and
how long the buffer held them."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from aiortp.codecs import PcmuCodec

from voicemesh.edge.sip.jitter import JitterBuffer, Pulled

pytestmark = pytest.mark.unit

FRAME = 160  # samples and RTP timestamp units in 20 ms at 8 kHz
TICK_S = 0.020
BASE_TS = 4_000_000_000  # wraps past 2**32 within a minute of media
WRAP = 1 << 32


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class Packet:
    arrives: float
    timestamp: int
    payload: bytes


def payload(k: int) -> bytes:
    return bytes([(k * 7) % 256]) * FRAME  # a frame that can be told from its neighbours


def sender(frames: int, *, start: float = 0.0, skew: float = 0.0, ts0: int = BASE_TS) -> list[tuple[float, int, bytes]]:
    """`frames` 20 ms frames, sent on a clock that runs `skew` fast (0.01: 1 % fast)."""
    return [(start + k * TICK_S / (1 + skew), (ts0 + k * FRAME) % WRAP, payload(k)) for k in range(frames)]


def network(
    sent: list[tuple[float, int, bytes]],
    *,
    seed: int = 1,
    delay_ms: float = 5.0,
    jitter_ms: float = 0.0,
    loss: float = 0.0,
    duplicate: float = 0.0,
) -> list[Packet]:
    rng = random.Random(seed)
    out = []
    for at, ts, data in sent:
        extra = rng.uniform(0.0, jitter_ms)
        dropped, doubled = rng.random() < loss, rng.random() < duplicate
        if dropped:
            continue
        arrives = at + (delay_ms + extra) / 1000
        out.append(Packet(arrives, ts, data))
        if doubled:
            out.append(Packet(arrives + 0.001, ts, data))
    return sorted(out, key=lambda p: p.arrives)


def play(packets: list[Packet], seconds: float, *, min_ms: int = 20, max_ms: int = 200) -> tuple[JitterBuffer, list[Pulled | None]]:
    """Packets in at their arrival times, one pull per 20 ms tick, for `seconds`."""
    clock = Clock()
    playout = JitterBuffer(PcmuCodec(), min_ms=min_ms, max_ms=max_ms, now=clock)
    out: list[Pulled | None] = []
    i = 0
    for k in range(round(seconds / TICK_S)):
        tick = k * TICK_S + 0.0101  # the tick's phase against the sender's: any will do
        while i < len(packets) and packets[i].arrives <= tick:
            clock.t = packets[i].arrives
            playout.put(packets[i].timestamp, packets[i].payload)
            i += 1
        clock.t = tick
        out.append(playout.pull())
    return playout, out


def played(out: list[Pulled | None]) -> list[int]:
    """Timestamps of the real frames the call heard, in the order it heard them."""
    return [p.timestamp for p in out if p is not None and p.delay_s is not None]


def delays_ms(out: list[Pulled | None]) -> list[float]:
    return sorted(p.delay_s * 1000 for p in out if p is not None and p.delay_s is not None)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def made_up(out: list[Pulled | None], sent: list[tuple[float, int, bytes]]) -> int:
    """Frames concealed inside the stream (not after its end, where the line is quiet)."""
    last = (sent[-1][1] - BASE_TS) % WRAP
    return sum(1 for p in out if p is not None and p.concealed and (p.timestamp - BASE_TS) % WRAP <= last)


def timestamps(sent: list[tuple[float, int, bytes]]) -> list[int]:
    return [ts for _, ts, _ in sent]


# ---- a clean line ----------------------------------------------------------------------


def test_a_clean_line_plays_every_frame_in_order_with_its_own_audio() -> None:
    sent = sender(500)  # 10 s
    playout, out = play(network(sent), 10.5)
    assert played(out) == timestamps(sent)
    codec = PcmuCodec()
    audio = {p.timestamp: p.pcm for p in out if p is not None and p.delay_s is not None}
    assert all(audio[ts] == codec.decode(data) for _, ts, data in sent)
    assert made_up(out, sent) == 0 and playout.counts().late == 0 and playout.counts().shrunk == 0
    assert out[-1] is None and playout.counts().suspended == 1  # the line went quiet: it waits


def test_on_a_clean_line_the_buffer_holds_a_frame_or_two_not_more() -> None:
    _, out = play(network(sender(500)), 10.5)
    d = delays_ms(out)
    assert pct(d, 0.5) <= 40.0 and pct(d, 0.99) <= 45.0


# ---- a bad network -----------------------------------------------------------------------


def test_reordered_packets_are_put_back_in_order_and_none_is_lost() -> None:
    sent = sender(1500)
    packets = network(sent, jitter_ms=30.0)  # uniform 0-30 ms: a packet often passes the one before
    assert [p.timestamp for p in packets] != timestamps(sent)  # the network did reorder
    playout, out = play(packets, 31.0)
    heard = played(out)
    assert heard == sorted(heard, key=lambda ts: (ts - BASE_TS) % WRAP)  # in the sender's order
    assert len(heard) >= 0.99 * len(sent)
    assert playout.counts().late + made_up(out, sent) <= 0.02 * len(sent)


def test_duplicates_are_dropped_and_counted_and_the_audio_is_as_if_there_were_none() -> None:
    sent = sender(500)
    playout, out = play(network(sent, duplicate=1.0), 10.5)
    assert played(out) == timestamps(sent)
    assert playout.counts().duplicates == len(sent)
    assert playout.counts().late == 0 and made_up(out, sent) == 0


def test_a_lost_packet_is_concealed_in_its_place() -> None:
    sent = sender(2500)
    packets = network(sent, loss=0.05, seed=3)
    lost = len(sent) - len(packets)
    playout, out = play(packets, 51.0)
    assert played(out) == [p.timestamp for p in packets]
    assert playout.counts().late == 0
    assert made_up(out, sent) == lost  # each hole filled once, in its place
    concealed = [p for p in out if p is not None and p.concealed]
    assert all(len(p.pcm) == 2 * FRAME for p in concealed)


def test_a_packet_later_than_the_buffer_is_deep_is_dropped_as_late_and_its_slot_concealed() -> None:
    sent = sender(200)
    packets = network(sent)
    stuck = packets[100]
    packets[100] = Packet(stuck.arrives + 0.5, stuck.timestamp, stuck.payload)
    packets.sort(key=lambda p: p.arrives)
    playout, out = play(packets, 4.5)
    assert stuck.timestamp not in played(out)
    assert playout.counts().late == 1 and made_up(out, sent) == 1
    assert len(played(out)) == len(sent) - 1


# ---- adapting to the network ---------------------------------------------------------------


def test_the_depth_grows_with_the_jitter_and_shrinks_back_when_the_line_calms() -> None:
    rough_sent = sender(1500)  # 30 s of a rough line ...
    rough = network(rough_sent, jitter_ms=60.0, seed=5)
    calm = network(sender(1500, start=30.0, ts0=BASE_TS + 1500 * FRAME))  # ... then 30 s of a calm one
    playout, out = play(rough + calm, 60.5)
    during = delays_ms(out[250:1500])  # after the first adaptations
    after = delays_ms(out[2000:])
    assert pct(during, 0.95) >= 50.0  # the early packets wait for the late ones
    assert pct(after, 0.95) <= 20.0  # and once the line is calm, a frame at most
    counts = playout.counts()
    assert counts.grown >= 1 and counts.shrunk >= 1
    unheard = len(rough_sent) - len([ts for ts in played(out) if ts in set(timestamps(rough_sent))])
    assert unheard <= 0.01 * len(rough_sent)  # 60 ms of jitter costs next to nothing


def test_the_depth_never_passes_its_upper_bound() -> None:
    clock = Clock()
    playout = JitterBuffer(PcmuCodec(), min_ms=20, max_ms=100, now=clock)
    packets = network(sender(1500), jitter_ms=400.0, seed=2)  # far more than the bound allows
    out: list[Pulled | None] = []
    i = 0
    for k in range(1550):
        tick = k * TICK_S + 0.0101
        while i < len(packets) and packets[i].arrives <= tick:
            clock.t = packets[i].arrives
            playout.put(packets[i].timestamp, packets[i].payload)
            i += 1
        clock.t = tick
        out.append(playout.pull())
        assert playout.counts().depth_ms <= 100.0
    assert pct(delays_ms(out), 0.95) <= 100.0 + TICK_S * 1000
    assert playout.counts().late > 0  # what comes later than the bound is dropped, and counted


def test_the_lower_bound_holds_even_on_a_clean_line() -> None:
    _, out = play(network(sender(500)), 10.5, min_ms=80)
    d = delays_ms(out[100:])
    assert pct(d, 0.5) >= 60.0


def test_bounds_that_cannot_hold_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="min_ms <= max_ms"):
        JitterBuffer(PcmuCodec(), min_ms=300, max_ms=200, now=Clock())


@pytest.mark.parametrize("skew", [0.01, -0.01])
def test_a_sender_clock_that_runs_fast_or_slow_keeps_the_delay_bounded(skew: float) -> None:
    sent = sender(6000, skew=skew)  # two minutes
    playout, out = play(network(sent), 121.0)
    d = delays_ms(out)
    late = delays_ms(out[-500:])  # the last ten seconds: the skew has had time to pile up
    assert pct(late, 0.99) <= 80.0  # neither piling up nor running dry
    counts = playout.counts()
    assert (counts.shrunk if skew > 0 else counts.grown) >= 0.005 * len(sent)  # it followed the clock
    lost_or_made_up = len(sent) - len(played(out)) + made_up(out, sent)
    assert lost_or_made_up <= 0.03 * len(sent)  # a 1 % clock costs about 1 % of the frames
    assert pct(d, 0.5) <= 45.0


# ---- jumps and new sources ------------------------------------------------------------------


def test_a_jump_ahead_in_the_timestamps_plays_on_at_once() -> None:
    before = sender(100)
    after = sender(100, start=2.0, ts0=BASE_TS + 3600 * 8000)  # an hour ahead
    playout, out = play(network(before + after), 4.5)
    heard = played(out)
    assert playout.counts().resynced == 1
    assert heard[:100] == timestamps(before)
    assert heard[-95:] == timestamps(after)[-95:]  # at most a few frames to resync


def test_a_new_timeline_behind_the_old_one_plays_after_a_short_gap() -> None:
    before = sender(100)
    behind = sender(200, start=2.0, ts0=BASE_TS - 123_456)  # restarted, same source
    _, out = play(network(before + behind), 6.5)
    heard = played(out)
    assert heard[:100] == timestamps(before)
    assert heard[-180:] == timestamps(behind)[-180:]  # it recovers within ~400 ms


def test_a_new_source_after_reset_plays_from_its_first_frames() -> None:
    clock = Clock()
    playout = JitterBuffer(PcmuCodec(), min_ms=20, max_ms=200, now=clock)
    for k, (at, ts, data) in enumerate(sender(50)):
        clock.t = at
        playout.put(ts, data)
        playout.pull() if k % 1 == 0 else None
    playout.reset()  # what aiortp does when the SSRC changes
    heard = []
    for _, ts, data in sender(50, start=1.0, ts0=77):
        playout.put(ts, data)
        pulled = playout.pull()
        if pulled is not None and pulled.delay_s is not None:
            heard.append(pulled.timestamp)
    assert heard == [77 + k * FRAME for k in range(len(heard))] and len(heard) >= 48


def test_the_interarrival_jitter_is_measured_on_arrival() -> None:
    playout, _ = play(network(sender(500), jitter_ms=40.0), 10.5)
    assert 0.005 <= playout.jitter_s <= 0.025  # uniform 0-40 ms: RFC 3550's J is ~13 ms
    calm, _ = play(network(sender(500)), 10.5)
    assert calm.jitter_s < 0.001


@pytest.mark.parametrize("pause_s", [0.5, 3.0])
def test_after_a_pause_the_buffer_waits_quietly_and_the_next_spurt_plays_from_its_first_frame(pause_s: float) -> None:
    """A caller that suppresses its silence (RFC 3551): packets stop, the timestamps jump by
    the pause. Nothing is made up for the pause beyond a short concealment, and the next talk
    spurt is heard whole, at once."""
    first = sender(100)
    resume_at = 2.0 + pause_s
    second = sender(100, start=resume_at, ts0=BASE_TS + round(resume_at * 8000))
    playout, out = play(network(first + second), resume_at + 2.5)
    assert played(out) == timestamps(first) + timestamps(second)
    quiet = out[round(2.2 / TICK_S) : round(resume_at / TICK_S)]
    assert all(p is None for p in quiet)  # suspended: the port decides what the call hears
    assert playout.counts().suspended >= 1
    resumed = next(p for p in out if p is not None and p.timestamp == timestamps(second)[0])
    assert resumed.delay_s is not None and resumed.delay_s <= TICK_S


def test_dtmf_suppresses_the_audio_without_concealing_it() -> None:
    clock = Clock()
    playout = JitterBuffer(PcmuCodec(), min_ms=20, max_ms=200, now=clock)
    for at, ts, data in sender(10):
        clock.t = at
        playout.put(ts, data)
        playout.pull()
    playout.suppress()  # what aiortp does on each telephone-event packet
    assert [playout.pull() for _ in range(5)] == [None] * 5
    assert playout.counts().concealed == 0
