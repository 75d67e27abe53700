"""What a port has for the call next: caller frames (bounded: a stalled call drops the
newest and says so) and call events (never dropped), in arrival order, then one `Hangup`
once the caller is gone. Shared by the ports whose media arrives on their own tasks (SIP,
WebRTC)."""

from __future__ import annotations

import asyncio
from collections import deque

from .port import Frame, Hangup, PortEvent


class PortInbox:
    def __init__(self, max_frames: int) -> None:
        self._events: deque[PortEvent] = deque()
        self._frames = 0
        self._max = max_frames
        self._wake = asyncio.Event()
        self.gone: str | None = None  # why the caller's side ended, once it has
        self.hung_up = asyncio.Event()

    def push(self, event: PortEvent) -> bool:
        """Queue an event; False for a frame dropped because the queue is full."""
        if isinstance(event, Frame):
            if self._frames >= self._max:
                return False
            self._frames += 1
        self._events.append(event)
        self._wake.set()
        return True

    def caller_gone(self, why: str) -> None:
        if self.gone is None:
            self.gone = why
            self.hung_up.set()
            self._wake.set()

    async def next(self) -> PortEvent:
        while True:
            if self._events:
                event = self._events.popleft()
                if isinstance(event, Frame):
                    self._frames -= 1
                return event
            if self.gone is not None:
                return Hangup(self.gone)
            self._wake.clear()
            await self._wake.wait()
