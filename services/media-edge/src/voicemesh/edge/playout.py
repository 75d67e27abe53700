"""Paced playout: agent audio leaves for the caller one 20 ms frame per 20 ms of a monotonic
clock, so barge-in can stop it within a frame and timing marks mean what the caller hears."""

from __future__ import annotations

from dataclasses import dataclass

FRAME_S = 0.020


@dataclass
class PlayoutClock:
    """When the next frame is due. Pure: the caller passes `now` (monotonic seconds)."""

    frame_s: float = FRAME_S
    # Frames sent at once at the start of a burst, to ride out scheduling jitter.
    lead_frames: int = 2
    _next_due: float | None = None
    _lead_left: int = 0

    def due(self, now: float) -> float:
        """The time the next frame should be sent (<= now means send immediately)."""
        if self._next_due is None or self._next_due < now - self.frame_s:
            # First frame, or the queue ran dry: restart the schedule from now.
            self._next_due = now
            self._lead_left = self.lead_frames
        if self._lead_left > 0:
            return now
        return self._next_due

    def sent(self) -> None:
        assert self._next_due is not None
        if self._lead_left > 0:
            self._lead_left -= 1
        self._next_due += self.frame_s
