"""One gRPC bidirectional stream seen from the client: a bounded outbound queue drained by a
single writer task (grpc.aio allows one write at a time), control messages ahead of queued
data, and the responses as an async iterator."""

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
        self._data: deque[Req] = deque()
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
        if len(self._data) >= self._max_queued:
            self._data.popleft()
            self._metrics.dropped(f"{self.name}_frame")
        self._data.append(req)
        self._wake.set()

    async def send(self, req: Req) -> None:
        """Queue data in order, waiting for room (backpressure)."""
        while len(self._data) >= self._max_queued and not self._closing:
            self._room.clear()
            await self._room.wait()
        if self._closing:
            return
        self._data.append(req)
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
            req = self._control.popleft() if self._control else self._data.popleft()
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
