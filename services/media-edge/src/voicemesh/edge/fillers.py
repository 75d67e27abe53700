"""Fillers for a late reply: which turn waits, since when, and which phrase comes next.

Pure, on media time like the turn rules: the call core arms the wait at the frame a
caller's turn ends (`arm`) and asks on every later frame whether it is over (`due`); the
rest of the rule (is the turn still the one awaiting a reply, has its audio come) is the
core's. The phrases rotate in the agent's order, skipping one whose audio the edge does not
hold yet (`ready`), and never the same phrase twice in a row (an agent with one phrase says
it each time). No phrase to say is a skip: the core counts it, it never waits for tts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from voicemesh.audio.frames import FRAME_MS


class FillerResult(StrEnum):
    """`result` of voicemesh_fillers_total."""

    PLAYED = "played"  # its first frame went to the caller
    SKIPPED = "skipped"  # due, but no phrase's audio was ready (never waited for)


@dataclass(frozen=True)
class FillerConfig:
    """Play one of `phrases` when no reply audio is ready `after_ms` after a turn ended."""

    after_ms: int
    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.after_ms <= 0 or not self.phrases:
            raise ValueError("a filler needs after_ms > 0 and at least one phrase")


@dataclass
class Filler:
    """The filler of one turn, from its decision on."""

    filler_id: str
    turn_id: str
    text: str
    started: bool = False  # its first frame went to the caller
    done: bool = False  # played out, or stopped


class FillerRules:
    def __init__(self, config: FillerConfig | None = None) -> None:
        self.config = config
        self._ready: set[str] = set()
        self._next = 0  # index of the phrase to try first
        self._last = ""
        self._armed = ""
        self._due_frame = 0

    def configure(self, config: FillerConfig | None) -> None:
        self.config = config
        self._next, self._last = 0, ""

    def ready(self, text: str) -> None:
        """The edge holds this phrase's audio (in the call's voice)."""
        self._ready.add(text)

    def arm(self, turn_id: str, frame: int) -> None:
        """The caller's turn `turn_id` ended at `frame`: its wait for a reply starts."""
        if self.config is None:
            return
        self._armed = turn_id
        self._due_frame = frame + -(-self.config.after_ms // FRAME_MS)

    def disarm(self) -> None:
        self._armed = ""

    def due(self, frame: int) -> str:
        """The armed turn once its wait is over at `frame` (it stays armed until the core
        disarms it), else ""."""
        return self._armed if self._armed and frame >= self._due_frame else ""

    def pick(self) -> str | None:
        """The next phrase to say, or None when none is ready (or only the last one said)."""
        if self.config is None:
            return None
        phrases = self.config.phrases
        for k in range(len(phrases)):
            i = (self._next + k) % len(phrases)
            text = phrases[i]
            if text in self._ready and (len(phrases) == 1 or text != self._last):
                self._next, self._last = i + 1, text
                return text
        return None
