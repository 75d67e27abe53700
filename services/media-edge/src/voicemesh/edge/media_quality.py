"""Caller media quality, measured on what arrives (pure: arrival times come in as arguments).

`JitterEstimator` is the interarrival jitter of RFC 3550 (section 6.4.1, code in A.8): for
each packet, transit = arrival time - media time; D = the change in transit from the previous
packet; J += (|D| - J) / 16. A packet that arrives as regularly as it was sent has D = 0; one
held up in a network or a carrier's buffer has D > 0 and the next one, catching up, D < 0.
Media time is the packet's own clock (Twilio's `timestamp`, samples sent on the native
stream), so a sender's silence or a gap in the media does not count as jitter.

The estimate is cheap to keep per packet (a few float operations) and is reported once per
`sample_every_s` of media time, so a metric sees one value a second per call.
"""

from __future__ import annotations

from voicemesh.audio.frames import FRAME_MS

SAMPLE_EVERY_S = 1.0


class JitterEstimator:
    """RFC 3550 interarrival jitter of one call's caller media, in seconds."""

    __slots__ = ("_next_sample_s", "_sample_every_s", "_transit", "jitter_s")

    def __init__(self, sample_every_s: float = SAMPLE_EVERY_S) -> None:
        if sample_every_s <= 0:
            raise ValueError(f"sample_every_s must be > 0, got {sample_every_s}")
        self._sample_every_s = sample_every_s
        self._transit: float | None = None
        self._next_sample_s = 0.0
        self.jitter_s = 0.0

    def arrived(self, arrival_s: float, media_s: float) -> float | None:
        """A packet whose media starts at `media_s` (the sender's clock) arrived at
        `arrival_s` (the receiver's monotonic clock; any origin). Returns the jitter estimate
        when a sample is due (once per `sample_every_s` of media), else None."""
        transit = arrival_s - media_s
        previous = self._transit
        self._transit = transit
        if previous is None:  # the first packet: nothing to compare with yet
            self._next_sample_s = media_s + self._sample_every_s
            return None
        d = transit - previous
        if d < 0:
            d = -d
        self.jitter_s += (d - self.jitter_s) * 0.0625
        if media_s < self._next_sample_s:
            return None
        self._next_sample_s += self._sample_every_s
        if self._next_sample_s <= media_s:  # a jump in media time: no burst of samples
            self._next_sample_s = media_s + self._sample_every_s
        return self.jitter_s


def frames_in(ms: int) -> int:
    """Whole 20 ms frames in `ms` of audio (lost and concealed audio are counted in them)."""
    return max(0, ms) // FRAME_MS
