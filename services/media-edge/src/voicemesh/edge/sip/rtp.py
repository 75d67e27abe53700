"""The RTP rules of a SIP call's audio, pure (time comes in as a parameter).

- `OutboundTimeline`: the timestamp and marker bit of each 20 ms packet the agent sends.
  Packets go out only while the agent speaks (RFC 3551 silence suppression); the first of
  each talk spurt carries the marker bit, and the timestamp runs on with the wall clock
  across the silence, so the caller's jitter buffer places the next spurt correctly.
- `InboundGaps`: keeps the caller's decoded audio gapless on its RTP timestamps. A jump
  forward (packets the jitter buffer never saw, a sender that suppressed its silence, a
  timestamp jump) is filled with silence, up to a bound; a step back (an old packet, a new
  timeline after an SSRC change) restarts the timeline instead of rewinding media time.
  Silence the port already supplied on its own clock while no packet came (`supplied`:
  a caller that suppresses its silence, RFC 3551, must still reach the end of its turn)
  counts as filled, so the hole is not filled twice.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_S = FRAME_SAMPLES / RATE
# A talk spurt ends when nothing was sent for this long (the playout queue ran dry).
SPURT_GAP_S = 0.060
MAX_FILL_S = 1.0  # a hole longer than this is filled only this far
JUMP_S = 10.0  # a step forward longer than this is a new timeline, not a hole
_HALF = 1 << 31


@dataclass(frozen=True)
class Stamp:
    timestamp: int
    marker: bool


class OutboundTimeline:
    """On a clock of `rate` Hz (8 kHz for G.711; WebRTC's port stamps at 16 kHz)."""

    def __init__(self, initial_timestamp: int, rate: int = RATE) -> None:
        self._next = initial_timestamp & 0xFFFFFFFF
        self._last_sent: float | None = None
        self._frame_samples = rate * 20 // 1000

    def stamp(self, now: float) -> Stamp:
        """The stamp of a frame sent at `now` (monotonic seconds)."""
        marker = False
        if self._last_sent is None:
            marker = True
        elif now - self._last_sent > SPURT_GAP_S:
            marker = True
            # the silence lasted (now - last) less the frame that ended the spurt
            skipped = round((now - self._last_sent) / FRAME_S) - 1
            self._next = (self._next + max(0, skipped) * self._frame_samples) & 0xFFFFFFFF
        self._last_sent = now
        stamp = Stamp(self._next, marker)
        self._next = (self._next + self._frame_samples) & 0xFFFFFFFF
        return stamp


@dataclass(frozen=True)
class Filled:
    silence_samples: int  # to insert before this audio
    lost_frames: int  # frames of media time the caller sent and we never had
    restarted: bool  # the timeline moved back: taken as a new one


class InboundGaps:
    """On a clock of `rate` Hz (8 kHz for G.711; Opus's RTP clock is 48 kHz)."""

    def __init__(self, rate: int = RATE) -> None:
        self._expected: int | None = None
        self._rate = rate

    def supplied(self, samples: int) -> None:
        """`samples` of silence went to the call in place of audio that did not come."""
        if self._expected is not None:
            self._expected = (self._expected + samples) & 0xFFFFFFFF

    def audio(self, timestamp: int, samples: int) -> Filled:
        """Audio of `samples` samples stamped `timestamp` arrives (in order from the
        jitter buffer); how much silence goes before it."""
        expected = self._expected
        self._expected = (timestamp + samples) & 0xFFFFFFFF
        if expected is None:
            return Filled(0, 0, False)
        ahead = (timestamp - expected) & 0xFFFFFFFF
        if ahead == 0:
            return Filled(0, 0, False)
        if ahead >= _HALF:  # behind what we have already played: a new timeline
            return Filled(0, 0, True)
        if ahead > JUMP_S * self._rate:  # far ahead: the sender's timestamps jumped, no hole
            return Filled(0, 0, True)
        fill = min(ahead, int(MAX_FILL_S * self._rate))
        return Filled(fill, ahead * 50 // self._rate, False)


def round_trip_s(arrival_ntp: int, lsr: int, dlsr: int) -> float | None:
    """RTT from a receiver report (RFC 3550 §6.4.1): its arrival (a 64-bit NTP time) less
    the middle 32 bits of the sender report it answers (LSR) less the time the far end held
    it (DLSR), both in 1/65536 s. None before the far end has seen a sender report of ours,
    or for a figure that cannot be one (clocks that moved)."""
    if lsr == 0:
        return None
    middle = (arrival_ntp >> 16) & 0xFFFFFFFF
    rtt = (middle - lsr - dlsr) & 0xFFFFFFFF
    seconds = rtt / 65536
    return seconds if seconds < 60 else None


DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
DTMF_TONE_MS = 100  # how long each key sounds
DTMF_GAP_MS = 60  # silence between keys
DTMF_VOLUME = 10  # -dBm0


@dataclass(frozen=True)
class EventPacket:
    at_s: float  # after the key's start
    payload: bytes  # RFC 4733 §2.3: event, E|R|volume, duration
    marker: bool


def dtmf_packets(key: str, tone_ms: int = DTMF_TONE_MS) -> list[EventPacket]:
    """One key as RFC 4733 telephone-events, all under the timestamp of its start: a packet
    every 20 ms with the duration so far (the first with the marker bit), then the end
    packet three times (§2.5.1.4). ValueError for what is not a key."""
    event = DTMF_EVENTS.get(key.upper())
    if event is None:
        raise ValueError(f"{key!r} is not a DTMF key")
    total = tone_ms * RATE // 1000
    packets = []
    duration = FRAME_SAMPLES
    while duration < total:
        at = (duration - FRAME_SAMPLES) / RATE
        packets.append(EventPacket(at, bytes([event, DTMF_VOLUME]) + duration.to_bytes(2, "big"), duration == FRAME_SAMPLES))
        duration += FRAME_SAMPLES
    end = bytes([event, 0x80 | DTMF_VOLUME]) + total.to_bytes(2, "big")
    last = (total - FRAME_SAMPLES) / RATE
    packets += [EventPacket(last, end, not packets and i == 0) for i in range(3)]
    return packets
