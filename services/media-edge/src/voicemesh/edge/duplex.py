"""One gRPC bidirectional stream seen from the client: a bounded outbound queue drained by a
single writer task (grpc.aio allows one write at a time), and the responses as an async
iterator.

Three ways in:
- `send_control`: ahead of everything queued, never dropped (cancel, config);
- `send` / `send_ordered`: in order with the data, never dropped (`send` waits for room,
  `send_ordered` never waits: a Flush must stay behind the frames it finalizes);
- `send_live`: live audio; when `max_queued` frames wait, the oldest *frame* is dropped
  (and counted), never an ordered message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import grpc

from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.metrics import ServiceMetrics

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Duplex(Generic[Req, Resp]):
    def __init__(
        self,
        call: grpc.aio.StreamStreamCall,
        name: str,
        metrics: ServiceMetrics,
        max_queued: int = 250,
    ) -> None:
        self.call = call
        self.name = name
        self._metrics = metrics
        self._data: deque[tuple[bool, Req]] = deque()  # (droppable, message)
        self._live = 0  # droppable messages in _data
        self._control: deque[Req] = deque()
        self._max_queued = max_queued
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name=f"{name}-writer")

    def send_live(self, req: Req) -> None:
        """Queue live data (audio): when the queue is full the oldest item is dropped."""
        if self._closing:
            return
        if self._live >= self._max_queued:
            for i, (droppable, _) in enumerate(self._data):
                if droppable:
                    del self._data[i]
                    self._live -= 1
                    break
            self._metrics.dropped(f"{self.name}_frame")
        self._data.append((True, req))
        self._live += 1
        self._wake.set()

    def send_ordered(self, req: Req) -> None:
        """Queue a message in order with the data that is never dropped and never waits."""
        if self._closing:
            return
        self._data.append((False, req))
        self._wake.set()

    async def send(self, req: Req) -> None:
        """Queue data in order, waiting for room (backpressure)."""
        while len(self._data) >= self._max_queued and not self._closing:
            self._room.clear()
            await self._room.wait()
        if self._closing:
            return
        self._data.append((False, req))
        self._wake.set()

    def send_control(self, req: Req) -> None:
        """Queue a control message ahead of any queued data."""
        if self._closing:
            return
        self._control.append(req)
        self._wake.set()

    def close_input(self) -> None:
        """Half-close once everything queued has been written."""
        self._closing = True
        self._wake.set()
        self._room.set()

    async def _write_loop(self) -> None:
        while True:
            while not self._control and not self._data:
                if self._closing:
                    with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
                        await self.call.done_writing()
                    return
                self._wake.clear()
                await self._wake.wait()
            if self._control:
                req = self._control.popleft()
            else:
                droppable, req = self._data.popleft()
                if droppable:
                    self._live -= 1
            if len(self._data) < self._max_queued:
                self._room.set()
            await self.call.write(req)

    async def responses(self) -> AsyncIterator[Resp]:
        """Every response until the peer ends the stream (read(): grpc.aio forbids mixing
        the iterator API with write())."""
        while True:
            resp = await self.call.read()
            if resp is grpc.aio.EOF:
                return
            yield resp  # type: ignore[misc]

    async def read(self, timeout_s: float) -> Resp:
        resp = await asyncio.wait_for(self.call.read(), timeout_s)
        if resp is grpc.aio.EOF:
            raise EOFError(f"{self.name} stream ended")
        return resp  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        self._room.set()
        await cancel_and_wait(self._writer)
        self.call.cancel()
