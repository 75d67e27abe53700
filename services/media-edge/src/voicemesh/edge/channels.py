"""gRPC channels to mesh peers, one per address, shared by every call of this edge."""

from __future__ import annotations

import contextlib

import grpc

from voicemesh.mesh.grpcutil import channel


class ChannelPool:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = channel(address)
            self._channels[address] = ch
        return ch

    async def close(self) -> None:
        for ch in self._channels.values():
            with contextlib.suppress(Exception):
                await ch.close()
        self._channels.clear()
