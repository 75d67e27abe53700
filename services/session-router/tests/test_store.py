"""The Lua scripts against a real valkey-server: the rule, atomicity, leases, NOSCRIPT."""

from __future__ import annotations

import random
import time

import pytest
import redis.asyncio as aioredis

from voicemesh.mesh.registry import InstanceInfo, InstanceRegistry
from voicemesh.router.choice import Candidate, choose
from voicemesh.router.store import NoCapacity, SessionStore

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


async def _active(registry: InstanceRegistry, service: str) -> dict[str, int]:
    return {s.info.instance_id: s.active for s in await registry.instances(service)}


async def test_script_follows_the_documented_rule(redis_client: aioredis.Redis) -> None:
    """Random fleets: the instance the script reserves is the one choice.choose() names."""
    rng = random.Random(7)
    registry = InstanceRegistry(redis_client, ttl_s=60, clock=lambda: T0)
    store = SessionStore(redis_client)
    for trial in range(150):
        await redis_client.flushdb()
        cands = []
        for n in range(rng.randint(1, 6)):
            cand = Candidate(
                instance_id=f"i{n}",
                region=rng.choice(["eu", "us", "ap"]),
                capacity=rng.randint(0, 4),
                active=0,
                draining=rng.random() < 0.2,
            )
            info = InstanceInfo("stt", cand.instance_id, f"h{n}:1", cand.region, cand.capacity)
            await registry.register(info)
            if cand.draining:
                await registry.set_draining(info)
            active = rng.randint(0, cand.capacity)
            if active:  # leases of other sessions, far from running out
                load = registry.keys.load("stt", cand.instance_id)
                await redis_client.zadd(load, {f"other{k}": 2e12 for k in range(active)})
            cands.append(
                Candidate(cand.instance_id, cand.region, cand.capacity, active, draining=cand.draining)
            )
        region = rng.choice(["eu", "us", "ap", ""])
        expected = choose(cands, region)
        try:
            got = await store.assign(f"s{trial}", region, ["stt"], now=T0)
        except NoCapacity:
            assert expected is None, f"trial {trial}: script found no room, rule picks {expected}"
            continue
        assert expected is not None, f"trial {trial}: script reserved where the rule finds none"
        assert got.reservations[0].instance_id == expected.instance_id, f"trial {trial}"


async def test_an_unreleased_session_frees_its_slot_when_the_lease_runs_out(
    redis_client: aioredis.Redis,
) -> None:
    now = [T0]
    registry = InstanceRegistry(redis_client, ttl_s=60, clock=lambda: now[0])
    store = SessionStore(redis_client, lease_s=60)
    await registry.register(InstanceInfo("tts", "t1", "h:1", "eu", 1))
    await store.assign("crashed-edge-call", "eu", ["tts"], now=now[0])
    with pytest.raises(NoCapacity):
        await store.assign("next", "eu", ["tts"], now=now[0] + 59)
    now[0] += 61
    assert await _active(registry, "tts") == {"t1": 0}
    got = await store.assign("next", "eu", ["tts"], now=now[0])
    assert got.reservations[0].instance_id == "t1"


async def test_reassign_replaces_a_dead_instance_and_keeps_the_live_one(
    redis_client: aioredis.Redis,
) -> None:
    registry = InstanceRegistry(redis_client, ttl_s=60)
    store = SessionStore(redis_client)
    stt1 = InstanceInfo("stt", "stt-1", "a:1", "eu", 4)
    tts1 = InstanceInfo("tts", "tts-1", "c:1", "eu", 4)
    for info in (stt1, tts1):
        await registry.register(info)
    first = await store.assign("call", "eu", ["stt", "tts"], now=time.time())
    assert [r.instance_id for r in first.reservations] == ["stt-1", "tts-1"]
    await redis_client.delete("vm:alive:stt:stt-1")  # stt-1 missed its heartbeats
    await registry.register(InstanceInfo("stt", "stt-2", "b:1", "eu", 4))
    again = await store.assign("call", "eu", ["stt", "tts"], now=time.time())
    assert [r.instance_id for r in again.reservations] == ["stt-2", "tts-1"]
    assert again.new == 1
    states = {s.info.instance_id: s.active for s in await registry.instances()}
    assert states == {"stt-1": 0, "stt-2": 1, "tts-1": 1}
    assert await store.release("call") == 2


async def test_expired_records_are_forgotten_by_the_script(redis_client: aioredis.Redis) -> None:
    registry = InstanceRegistry(redis_client, ttl_s=60)
    store = SessionStore(redis_client)
    await registry.register(InstanceInfo("stt", "gone", "a:1", "eu", 4))
    await redis_client.delete("vm:inst:stt:gone", "vm:alive:stt:gone")  # retain_s passed
    with pytest.raises(NoCapacity) as err:
        await store.assign("call", "eu", ["stt"], now=time.time())
    assert err.value.eligible == 0
    assert await redis_client.smembers("vm:svc:stt") == set()


async def test_scripts_are_reloaded_after_the_server_lost_them(
    redis_client: aioredis.Redis,
) -> None:
    registry = InstanceRegistry(redis_client, ttl_s=60)
    store = SessionStore(redis_client)
    await store.load()
    await registry.register(InstanceInfo("stt", "s1", "a:1", "eu", 4))
    await redis_client.script_flush()
    got = await store.assign("call", "eu", ["stt"], now=time.time())
    assert got.reservations[0].instance_id == "s1"
    await redis_client.script_flush()
    assert await store.release("call") == 1
