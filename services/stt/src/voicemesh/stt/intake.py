"""The bounded queue between a stream's reader and its processing loop.

Audio and controls keep their order (a Flush finalizes exactly the audio sent before it).
Live audio never waits: when `max_frames` frames are queued the oldest frame is dropped.
Controls are never dropped; a client that piles up more than `max_controls` of them is
made to wait (gRPC flow control pushes back on it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

F = TypeVar("F")
C = TypeVar("C")


class Intake(Generic[F, C]):
    """Frames of type `F` (put with `put_frame`) and controls of type `C` (`put_control`)."""

    def __init__(self, max_frames: int, max_controls: int = 16) -> None:
        if max_frames < 1 or max_controls < 1:
            raise ValueError("Intake bounds must be positive")
        self._max_frames = max_frames
        self._max_controls = max_controls
        self._items: deque[tuple[bool, F | C]] = deque()  # (is a frame, item)
        self._frames = 0
        self._controls = 0
        self._readable = asyncio.Event()
        self._control_room = asyncio.Event()
        self._control_room.set()

    def __len__(self) -> int:
        return len(self._items)

    def put_frame(self, frame: F) -> int:
        """Queue a frame; returns how many frames were dropped to make room (0 or 1)."""
        dropped = 0
        if self._frames >= self._max_frames:
            for i, (is_frame, _) in enumerate(self._items):
                if is_frame:
                    del self._items[i]
                    break
            self._frames -= 1
            dropped = 1
        self._items.append((True, frame))
        self._frames += 1
        self._readable.set()
        return dropped

    async def put_control(self, control: C) -> None:
        while self._controls >= self._max_controls:
            self._control_room.clear()
            await self._control_room.wait()
        self._items.append((False, control))
        self._controls += 1
        self._readable.set()

    async def get(self) -> F | C:
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        is_frame, item = self._items.popleft()
        if is_frame:
            self._frames -= 1
        else:
            self._controls -= 1
            self._control_room.set()
        return item
