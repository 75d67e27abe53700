"""The agent's audio on its way to a WebRTC caller, pure.

aiortc pulls audio (`track.recv()`) while the call pushes it (`play`, already paced in real
time by the call): the queue between them is paced once, by the call. It is bounded and
counts what it drops; `clear` drops what is queued (barge-in); a mark is played when the
frames before it have been pulled."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class _Mark:
    name: str


@dataclass(frozen=True)
class Pulled:
    pcm: bytes | None  # the next frame, or None when nothing is queued
    marks: list[str] = field(default_factory=list)  # marks now played (they preceded it)


class OutboundQueue:
    def __init__(self, max_frames: int = 10) -> None:
        self._items: deque[bytes | _Mark] = deque()
        self._frames = 0
        self._max = max_frames
        self.dropped = 0

    @property
    def frames(self) -> int:
        return self._frames

    def play(self, pcm: bytes) -> int:
        """Queue a frame; returns how many old frames were dropped to make room."""
        self._items.append(pcm)
        self._frames += 1
        dropped = 0
        while self._frames > self._max:
            for i, item in enumerate(self._items):
                if isinstance(item, bytes):
                    del self._items[i]
                    break
            self._frames -= 1
            dropped += 1
        self.dropped += dropped
        return dropped

    def mark(self, name: str) -> bool:
        """True if nothing is queued ahead of the mark (it is played now); else it is queued
        and comes back from `pull` once the frames before it have gone."""
        if not self._items:
            return True
        self._items.append(_Mark(name))
        return False

    def clear(self) -> list[str]:
        """Drop the queued audio; the marks among it count as played (the contract: a mark
        is answered once everything before it has played or been cleared)."""
        marks = [item.name for item in self._items if isinstance(item, _Mark)]
        self._items.clear()
        self._frames = 0
        return marks

    def pull(self) -> Pulled:
        marks: list[str] = []
        while self._items:
            item = self._items.popleft()
            if isinstance(item, _Mark):
                marks.append(item.name)
                continue
            self._frames -= 1
            return Pulled(item, marks)
        return Pulled(None, marks)
