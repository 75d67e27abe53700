"""The SIP caller's jitter buffer, pure: packets in (with their arrival time), one 20 ms frame
out per tick. No sockets, no asyncio: time comes from a `now` callable.

aiortp 0.8.0 brings an adaptive playout buffer too. Measured on this module's tests it
does not hold up: a sender whose clock runs 1 % slow loses 7 % of its frames to it (each
frame that arrives just after its slot was concealed is dropped as late, and the buffer
never deepens), and under heavy jitter it counts frames instead of time and holds audio
well past its upper bound. So this one is ours. What it does:

- Frames are kept by RTP timestamp, so reordering costs nothing while the packet comes
  before its slot. Duplicates (of a buffered or a recently played frame) are dropped and
  counted.
- The target depth follows the jitter: the spread of the packets' transit times (arrival
  less media time) over the last `WINDOW` packets, its 95th percentile above its minimum,
  in frames, plus one; within [`min_ms`, `max_ms`].
- A missing frame is concealed (aiortp's G.711 concealment: the last frame repeated and
  faded) and the head moves on. If the missing packet then arrives before any real frame
  has played (it was late, not lost), the head steps back to it: the concealment becomes a
  stretch, the buffer is one frame deeper, and the frame is heard. This is how the buffer
  grows: on demand, by what the network showed, and how it absorbs a sender that is slow.
- It shrinks by dropping a frame when its depth has stayed above target for `SHRINK_AFTER`
  ticks (a fast sender, a calmer line), and at once past `max_ms`.
- Nothing buffered for `MAX_CONCEAL_MS` (a pause, a dead line): it suspends, and ticks give
  None until a packet restarts it. The port decides what the call hears meanwhile.
- A timestamp jump ahead, or a timeline that restarts behind (far behind, or
  `RESYNC_LATE` late packets in a row), starts over on the new timeline. So does `reset`
  (aiortp calls it when the SSRC changes).

`Unbuffered` stands in for aiortp's own reordering stage, which would hold every packet
until the next one arrived (20 ms): a G.711 packet is one whole frame, so each comes here at
once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiortp.codecs import Codec
from aiortp.jitterbuffer import JitterFrame
from aiortp.packet import RtpPacket
from aiortp.plc import PcmConcealer

from ..media_quality import JitterEstimator

WINDOW = 100  # packets whose transit sets the target (2 s of audio)
SHRINK_AFTER = 25  # ticks above target before a frame is dropped
MAX_CONCEAL_MS = 120  # concealment with nothing buffered, before the buffer suspends
RECENT = 64  # played timestamps remembered, to tell a duplicate from a late packet
RESYNC_LATE = 10  # late packets in a row: the timeline moved back
JUMP_S = 1.0  # a packet this far ahead of the buffer starts a new timeline
_HALF = 1 << 31
_WRAP = 1 << 32


def _signed(delta: int) -> int:
    delta &= _WRAP - 1
    return delta - _WRAP if delta >= _HALF else delta


@dataclass(frozen=True)
class Pulled:
    pcm: bytes  # 16-bit PCM at the codec's rate
    timestamp: int  # RTP timestamp of the slot it fills
    delay_s: float | None  # its packet's arrival to its playout; None when made up
    concealed: bool  # made up (a lost or late frame)


@dataclass(frozen=True)
class PlayoutCounts:
    depth_ms: float  # audio buffered ahead of the head, now
    target_ms: float  # what the measured jitter asks for, within the bounds
    late: int  # arrived after their slot had played: dropped
    duplicates: int  # arrived twice: the copy dropped
    concealed: int  # frames made up for lost or late ones
    grown: int  # late frames stepped back for (the buffer one frame deeper each)
    shrunk: int  # frames dropped to make it shallower
    suspended: int  # nothing came for MAX_CONCEAL_MS (a pause, or a long loss burst)
    resynced: int  # timestamp jumps taken as a new timeline


class JitterBuffer:
    def __init__(self, codec: Codec, *, min_ms: int, max_ms: int, now: Callable[[], float]) -> None:
        if not 0 < min_ms <= max_ms:
            raise ValueError(f"jitter buffer bounds: need 0 < min_ms <= max_ms, got {min_ms}, {max_ms}")
        self._codec = codec
        self._now = now
        self._rate = codec.sample_rate
        self._step = codec.samples_per_frame
        self._ptime_s = self._step / self._rate
        self._min = max(1, round(min_ms / 1000 / self._ptime_s))
        self._max = max(self._min, round(max_ms / 1000 / self._ptime_s))
        self._concealer = PcmConcealer(sample_rate=self._rate)
        self._newest_media_s = 0.0  # media time runs on across timelines
        self._jitter_sample: float | None = None
        self.last_arrival_s: float | None = None
        self.late = self.duplicates = self.concealed = self.grown = self.shrunk = 0
        self.suspended = self.resynced = 0
        self._start_timeline()

    def _start_timeline(self) -> None:
        self._frames: dict[int, tuple[bytes, float]] = {}  # timestamp -> (payload, arrival)
        self._head: int | None = None  # the next slot to play; None: priming or suspended
        self._newest: int | None = None  # the newest timestamp seen on this timeline
        self._estimator = JitterEstimator()
        self._transits: deque[float] = deque(maxlen=WINDOW)
        self._target = self._min
        self._streak: list[int] = []  # slots concealed since the last real frame played
        self._above = 0  # ticks the depth has stayed above target
        self._late_run = 0
        self._played: deque[int] = deque(maxlen=RECENT)
        self._played_set: set[int] = set()

    # ---- what aiortp's session calls ---------------------------------------------------

    def put(self, timestamp: int, payload: bytes) -> None:
        now = self._now()
        self.last_arrival_s = now
        if timestamp in self._frames or timestamp in self._played_set:
            self.duplicates += 1
            return
        if self._newest is not None and not -RECENT * self._step < _signed(timestamp - self._newest) <= JUMP_S * self._rate:
            self.resynced += 1  # far ahead, or far behind: a new timeline
            self._start_timeline()
        self._measure(now, timestamp)
        head = self._head
        if head is not None and _signed(timestamp - head) < 0:
            if not self._step_back(timestamp):
                self.late += 1
                self._late_run += 1
                if self._late_run >= RESYNC_LATE:  # the sender's timeline restarted behind
                    self.resynced += 1
                    self._start_timeline()
                    self._measure(now, timestamp)
                    self._frames[timestamp] = (payload, now)
                return
        self._late_run = 0
        self._frames[timestamp] = (payload, now)

    def reset(self) -> None:
        """A new source: start over (aiortp calls this when the SSRC changes)."""
        self._start_timeline()

    def suppress(self) -> None:
        """The sender sends DTMF events instead of audio: nothing to conceal meanwhile."""
        self._frames.clear()
        self._head = None
        self._streak.clear()

    def set_cn(self, level: int, timestamp: int) -> None:
        """RFC 3389 comfort noise: the sender is there, and silent."""
        self.last_arrival_s = self._now()

    def stats(self) -> dict[str, float | int]:
        return {k: v for k, v in vars(self.counts()).items()}

    # ---- in ---------------------------------------------------------------------------

    def _measure(self, now: float, timestamp: int) -> None:
        """Transit (arrival less media time) for the target, and RFC 3550 jitter; a packet
        is placed on the sender's clock against the newest one (a reordered one is measured
        where the sender put it)."""
        step = 0 if self._newest is None else _signed(timestamp - self._newest)
        media_s = self._newest_media_s + step / self._rate
        if step >= 0:
            self._newest, self._newest_media_s = timestamp, media_s
        self._transits.append(now - media_s)
        sample = self._estimator.arrived(now, media_s)
        if sample is not None:
            self._jitter_sample = sample
        if len(self._transits) % 10 == 0 or len(self._transits) < 10:
            ordered = sorted(self._transits)
            spread = ordered[int(0.95 * (len(ordered) - 1))] - ordered[0]
            self._target = max(self._min, min(self._max, int(spread / self._ptime_s + 0.999) + 1))

    def _step_back(self, timestamp: int) -> bool:
        """A late packet whose slot was concealed since the last real frame played: play it
        after all, one frame deeper (if that stays within the upper bound)."""
        if timestamp not in self._streak or self._newest is None:
            return False
        if _signed(self._newest - timestamp) // self._step + 1 > self._max:
            return False
        self._head = timestamp
        del self._streak[self._streak.index(timestamp) :]
        self.grown += 1
        return True

    # ---- out --------------------------------------------------------------------------

    def _ahead(self) -> int:
        """Slots from the head to the newest buffered frame (-1: nothing buffered)."""
        if self._head is None or not self._frames:
            return -1
        return max(_signed(ts - self._head) for ts in self._frames) // self._step

    def pull(self) -> Pulled | None:
        """One tick: the next 20 ms of audio, or None while there is none to give."""
        if self._head is None and not self._prime():
            return None
        assert self._head is not None
        depth = self._ahead() + 1
        self._above = self._above + 1 if depth > self._target else 0
        following = (self._head + self._step) % _WRAP
        if depth > self._max:  # past the upper bound: skip ahead to it
            skip = (depth - self._max) * self._step
            self._head = (self._head + skip) % _WRAP
            stale = [ts for ts in self._frames if _signed(ts - self._head) < 0]
            for ts in stale:
                del self._frames[ts]
            self.shrunk += max(1, len(stale))
            self._streak.clear()
            self._above = 0
        elif self._above >= SHRINK_AFTER and self._head in self._frames and following in self._frames:
            self._frames.pop(self._head)  # shallower by one frame
            self._head = following
            self._above = 0
            self.shrunk += 1
        head = self._head
        self._head = (head + self._step) % _WRAP
        entry = self._frames.pop(head, None)
        if entry is None:
            if not self._frames and len(self._streak) * self._ptime_s * 1000 >= MAX_CONCEAL_MS:
                self._head = None  # a pause, not a loss: suspend until packets come again
                self._streak.clear()
                self.suspended += 1
                return None
            self._streak.append(head)
            self.concealed += 1
            pcm = self._codec.conceal(self._step) or self._concealer.conceal(self._step)
            return Pulled(pcm, head, None, True)
        self._streak.clear()
        self._remember(head)
        payload, arrived = entry
        try:
            pcm = self._codec.decode(payload)
        except Exception:  # a payload the codec cannot read: its slot is concealed
            self.concealed += 1
            return Pulled(self._concealer.conceal(self._step), head, None, True)
        self._concealer.update(pcm)
        return Pulled(pcm, head, self._now() - arrived, False)

    def _prime(self) -> bool:
        """Start playing once the target's worth is buffered, or the first has waited that
        long."""
        if not self._frames:
            return False
        earliest = min(self._frames, key=lambda ts: _signed(ts - (self._newest or ts)))
        waited = self._now() - self._frames[earliest][1]
        if len(self._frames) < self._target and waited < (self._target - 1) * self._ptime_s:
            return False
        self._head = earliest
        return True

    def _remember(self, timestamp: int) -> None:
        if len(self._played) == self._played.maxlen:
            self._played_set.discard(self._played[0])
        self._played.append(timestamp)
        self._played_set.add(timestamp)

    # ---- reading ----------------------------------------------------------------------

    @property
    def jitter_s(self) -> float:
        """The caller's RFC 3550 interarrival jitter, as measured so far."""
        return self._estimator.jitter_s

    def jitter_sample(self) -> float | None:
        """The interarrival jitter once a second of media (None in between)."""
        sample, self._jitter_sample = self._jitter_sample, None
        return sample

    def counts(self) -> PlayoutCounts:
        return PlayoutCounts(
            depth_ms=(self._ahead() + 1) * self._ptime_s * 1000,
            target_ms=self._target * self._ptime_s * 1000,
            late=self.late,
            duplicates=self.duplicates,
            concealed=self.concealed,
            grown=self.grown,
            shrunk=self.shrunk,
            suspended=self.suspended,
            resynced=self.resynced,
        )


class Unbuffered:
    """Stands in for aiortp's `JitterBuffer` (0.8.0) in front of ours: each audio packet is
    a frame at once. Sequence-number loss is still counted by aiortp's stream statistics,
    which see every packet before this does."""

    capacity = 1

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        return False, JitterFrame(packet.payload, packet.timestamp)

    def mark_non_media(self, sequence_number: int) -> JitterFrame | None:
        return None

    def reset(self) -> None:
        return None
