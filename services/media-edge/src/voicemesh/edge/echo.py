"""An echo gate: could this caller frame be the agent's own voice coming back?

Pure, on media time counted in caller frames. Agent audio leaks back into the caller's line
(a speakerphone, a carrier's hybrid) delayed and quieter: at least `margin_db` below what
was sent. While agent audio went out in the last `tail_ms`, a caller frame counts as speech
for barge-in only when it is louder than the loudest agent frame of that window minus the
margin; a quiet caller still cuts in by words, once the agent has stopped, or once stt
hears them (see `interruptions`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voicemesh.audio.frames import FRAME_MS


@dataclass(frozen=True)
class EchoConfig:
    # The echo return loss assumed: echo arrives at least this much below the agent's audio.
    # 0 turns the gate off.
    margin_db: float = 25.0
    # How long after agent audio went out its echo may still arrive.
    tail_ms: int = 600


class EchoGate:
    def __init__(self, config: EchoConfig | None = None) -> None:
        self.config = config or EchoConfig()
        self._tail_frames = max(1, self.config.tail_ms // FRAME_MS)
        # (caller frame index at the time, level in dBFS) of recent agent frames.
        self._sent: deque[tuple[int, float]] = deque()

    def played(self, at_frame: int, level_dbfs: float) -> None:
        """An agent frame of `level_dbfs` went out while caller frame `at_frame` was the latest."""
        if self.config.margin_db > 0:
            self._sent.append((at_frame, level_dbfs))

    def threshold(self, frame: int) -> float | None:
        """The level a caller frame must exceed to be more than echo (None: no agent audio
        recently, every frame counts)."""
        sent = self._sent
        while sent and sent[0][0] < frame - self._tail_frames:
            sent.popleft()
        if not sent:
            return None
        return max(level for _, level in sent) - self.config.margin_db

    def passes(self, frame: int, level_dbfs: float) -> bool:
        limit = self.threshold(frame)
        return limit is None or level_dbfs > limit
