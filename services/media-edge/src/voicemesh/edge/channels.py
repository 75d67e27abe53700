"""gRPC channels to mesh peers, one per address, shared by every call of this edge.

A call's role client `acquire`s the channel of the instance it streams to and `release`s it
when it closes or moves on. A channel nobody uses is kept for the next call (instances
live long), but only the `max_idle` most recently used idle ones: the rest are closed, so
the addresses of instances that died or were replaced are forgotten instead of piling up
for the life of the process. The router's channel is held for good (`get`).

With the mesh's mTLS (`tls`), each channel is opened as the edge's identity and insists on
the certificate of the service it dials (`peer`).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import grpc

from voicemesh.mesh.grpcutil import channel
from voicemesh.mesh.mtls import MeshTls

DEFAULT_MAX_IDLE = 8


class ChannelPool:
    def __init__(self, max_idle: int = DEFAULT_MAX_IDLE, tls: MeshTls | None = None) -> None:
        if max_idle < 0:
            raise ValueError("max_idle must be >= 0")
        self._tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._users: dict[str, int] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._max_idle = max_idle

    def get(self, address: str, peer: str) -> grpc.aio.Channel:
        """The channel to `address` (an instance of service `peer`), held for the life of
        the pool."""
        return self.acquire(address, peer)

    def acquire(self, address: str, peer: str) -> grpc.aio.Channel:
        """The channel to `address`, an instance of service `peer` (opened on first use);
        `release` it when done."""
        ch = self._channels.get(address)
        if ch is None:
            ch = channel(address, self._tls, peer)
            self._channels[address] = ch
        self._users[address] = self._users.get(address, 0) + 1
        self._idle.pop(address, None)
        return ch

    async def release(self, address: str) -> None:
        """One user less; an idle channel beyond the `max_idle` newest is closed."""
        users = self._users.get(address, 0)
        if users <= 0:
            return
        if users > 1:
            self._users[address] = users - 1
            return
        del self._users[address]
        self._idle[address] = None
        while len(self._idle) > self._max_idle:
            oldest, _ = self._idle.popitem(last=False)
            ch = self._channels.pop(oldest)
            with contextlib.suppress(Exception):
                await ch.close()

    @property
    def addresses(self) -> list[str]:
        """Every address with an open channel (in use or idle)."""
        return list(self._channels)

    def users(self, address: str) -> int:
        return self._users.get(address, 0)

    async def close(self) -> None:
        for ch in self._channels.values():
            with contextlib.suppress(Exception):
                await ch.close()
        self._channels.clear()
        self._users.clear()
        self._idle.clear()
