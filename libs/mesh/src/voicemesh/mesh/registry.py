"""Instance registry in Valkey/Redis: every service instance announces itself here, and the
session-router reads it to place calls. This docstring is the one description of the keys;
`Keys` builds them and the router's Lua scripts (voicemesh.router, assign.lua / release.lua)
build the same names from the same prefix.

Key schema (prefix "vm:" by default; <service> never contains ":"):

    vm:services                       set    names of services that ever registered
    vm:svc:<service>                  set    instance ids of that service
    vm:inst:<service>:<instance_id>   hash   address, region, zone, capacity, draining ("0"/"1"),
                                             started_at (unix seconds); PEXPIRE retain_s,
                                             pushed forward by every heartbeat
    vm:alive:<service>:<instance_id>  string "1" with PEXPIRE ttl_s: the instance is alive
                                             while this key exists
    vm:load:<service>:<instance_id>   zset   member = session id, score = lease deadline
                                             (unix ms): the instance's reserved slots
    vm:sess:<session_id>              hash   per reserved service: i:<service> = instance id,
                                             a:<service> = address, r:<service> = region;
                                             PEXPIRE = the lease

Liveness is a separate key so that a missed heartbeat makes an instance ineligible at once
(`alive=False`) while its record and its reservations survive a short blip; a record whose
instance stays silent for `retain_s` expires and is forgotten (the router's script also drops
it from `vm:svc:<service>` lazily).

Load is a sorted set of leases rather than a counter: `active` = the number of unexpired
leases. A session that is never released (a crashed edge) frees its slots when its lease runs
out, and a release can never push the count below zero.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import WatchError

from .urls import redact_url as redact_url  # its home is .urls; cluster_cmd imports it from here

# The roles a call reserves a slot on (media-edge asks the router for one instance of each).
PLACED_ROLES = ("stt", "reasoning", "tts")


@dataclass(frozen=True)
class Keys:
    """Key names of the schema above, under one prefix (tests may use their own)."""

    prefix: str = "vm:"

    @property
    def services(self) -> str:
        return f"{self.prefix}services"

    def members(self, service: str) -> str:
        return f"{self.prefix}svc:{service}"

    def instance(self, service: str, instance_id: str) -> str:
        return f"{self.prefix}inst:{service}:{instance_id}"

    def alive(self, service: str, instance_id: str) -> str:
        return f"{self.prefix}alive:{service}:{instance_id}"

    def load(self, service: str, instance_id: str) -> str:
        return f"{self.prefix}load:{service}:{instance_id}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}sess:{session_id}"


def check_service_name(service: str) -> None:
    """Service names are short words: no ":" (the key separator) and no whitespace."""
    if not service or ":" in service or any(c.isspace() for c in service):
        raise ValueError(f"service name {service!r} must be non-empty, without ':' or spaces")


@dataclass(frozen=True)
class InstanceInfo:
    """What an instance announces: where to reach it, where it runs, how many sessions fit."""

    service: str
    instance_id: str
    address: str
    region: str
    capacity: int
    # Failure domain inside the region (Kubernetes: topology.kubernetes.io/zone); may be "".
    zone: str = ""

    def __post_init__(self) -> None:
        check_service_name(self.service)
        if not self.instance_id:
            raise ValueError("instance_id must not be empty")
        if not self.address:
            raise ValueError(f"instance {self.instance_id!r} has no address")
        if self.capacity < 0:
            raise ValueError(f"instance {self.instance_id!r}: capacity {self.capacity} < 0")


@dataclass(frozen=True)
class InstanceState:
    """An instance as the router sees it now."""

    info: InstanceInfo
    active: int
    draining: bool
    alive: bool


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class InstanceRegistry:
    """Registers, refreshes and lists instances. One per process; safe to share between tasks.

    ttl_s: how long an instance counts as alive after its last heartbeat (heartbeat every
    ttl_s / 3). retain_s: how long a silent instance's record stays listed (default 10 x ttl).
    clock: wall clock in unix seconds (lease deadlines are compared with it).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        ttl_s: float = 6.0,
        *,
        retain_s: float | None = None,
        keys: Keys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.redis = redis
        self.keys = keys if keys is not None else Keys()
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._retain_ms = max(self._ttl_ms, round((retain_s or 10 * ttl_s) * 1000))
        self._clock = clock

    async def register(self, info: InstanceInfo) -> None:
        """Announce a (re)started instance: not draining, started now, alive for ttl_s."""
        await self._upsert(info, fresh=True, draining=False)

    async def heartbeat(self, info: InstanceInfo) -> bool:
        """Keep the instance alive for another ttl_s. Re-creates the record if it expired
        (keeping the draining flag if the record survived). Returns False when the instance
        had already been considered dead (its liveness key had expired)."""
        results = await self._upsert(info, fresh=False, draining=None)
        return results[0] is not None  # SET ... GET: the previous liveness value

    async def set_draining(self, info: InstanceInfo, draining: bool = True) -> None:
        """A draining instance keeps its sessions but is given no new ones."""
        await self._upsert(info, fresh=False, draining=draining)

    async def mark_draining(self, service: str, instance_id: str) -> bool:
        """From outside the instance (an operator's drain): flip the flag of an existing
        record and nothing else, so a dead instance is not made to look alive. The instance's
        own heartbeats keep the flag. False when there is no record."""
        check_service_name(service)
        inst = self.keys.instance(service, instance_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(inst)
                    if not await pipe.exists(inst):
                        await pipe.reset()
                        return False
                    pipe.multi()
                    pipe.hset(inst, "draining", "1")
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def deregister(self, info: InstanceInfo) -> None:
        """Leave the registry now (graceful shutdown); the instance's leases are dropped."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                k.alive(info.service, info.instance_id),
                k.instance(info.service, info.instance_id),
                k.load(info.service, info.instance_id),
            )
            pipe.srem(k.members(info.service), info.instance_id)
            await pipe.execute()

    async def instances(self, service: str | None = None) -> list[InstanceState]:
        """Known instances (alive or not yet forgotten), sorted by service and id."""
        k = self.keys
        if service is None:
            services = sorted(_text(s) for s in await self.redis.smembers(k.services))
        else:
            check_service_name(service)
            services = [service]
        now_ms = round(self._clock() * 1000)
        states: list[InstanceState] = []
        for svc in services:
            ids = sorted(_text(i) for i in await self.redis.smembers(k.members(svc)))
            if not ids:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for iid in ids:
                    pipe.hmget(k.instance(svc, iid), "address", "region", "capacity", "draining", "zone")
                    pipe.exists(k.alive(svc, iid))
                    pipe.zcount(k.load(svc, iid), f"({now_ms}", "+inf")
                replies = await pipe.execute()
            for n, iid in enumerate(ids):
                fields, alive, active = replies[3 * n : 3 * n + 3]
                address, region, capacity, draining, zone = (_text(f) for f in fields)
                if not address:  # the record expired; the router's script forgets the id
                    continue
                info = InstanceInfo(svc, iid, address, region, int(capacity or 0), zone)
                states.append(InstanceState(info, int(active), draining == "1", bool(alive)))
        return states

    async def _upsert(self, info: InstanceInfo, *, fresh: bool, draining: bool | None) -> list[object]:
        """One MULTI: liveness first (its previous value is the first result), then the
        record's static fields, its expiry and the membership sets."""
        k = self.keys
        inst = k.instance(info.service, info.instance_id)
        static = {
            "address": info.address,
            "region": info.region,
            "zone": info.zone,
            "capacity": info.capacity,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(k.alive(info.service, info.instance_id), "1", px=self._ttl_ms, get=True)
            pipe.hset(inst, mapping=static)
            if fresh:
                pipe.hset(inst, "started_at", f"{self._clock():.3f}")
            else:
                pipe.hsetnx(inst, "started_at", f"{self._clock():.3f}")
            if draining is None:
                pipe.hsetnx(inst, "draining", "0")
            else:
                pipe.hset(inst, "draining", "1" if draining else "0")
            pipe.pexpire(inst, self._retain_ms)
            pipe.sadd(k.members(info.service), info.instance_id)
            pipe.sadd(k.services, info.service)
            return await pipe.execute()


def redis_from_url(url: str, timeout_s: float = 3.0) -> aioredis.Redis:
    """A client for `url` (redis://, rediss://, unix://) with decoded string replies, socket
    timeouts of timeout_s, and a short retry on connection errors (3 tries, 10-250 ms apart)
    so that a lost server shows as an error within about a second, not after redis-py's
    default ten tries. Connects lazily; `connect_redis` also checks the server answers."""
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), retries=3),
    )


def bounded_client(redis: aioredis.Redis, timeout_s: float) -> aioredis.Redis:
    """A client on a pool of its own to the server `redis` talks to (same address,
    credentials, TLS, database and decoding) where one connect or reply waits at most
    `timeout_s` and a failed one is tried once more: a command on a stopped or stalled server
    fails in about 2 x timeout_s instead of after `redis_from_url`'s seconds. For the call
    path (the router's Assign); the caller closes it."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    pool = redis.connection_pool
    kwargs = {
        **pool.connection_kwargs,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), retries=1),
    }
    return aioredis.Redis(
        connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


async def connect_redis(url: str, timeout_s: float = 3.0) -> aioredis.Redis:
    """`redis_from_url(url)` once it has answered PING. Raises ConnectionError with one line
    naming the server (password hidden) and the cause."""
    shown = redact_url(url)
    try:
        client = redis_from_url(url, timeout_s)
    except ValueError as exc:
        raise ConnectionError(f"cannot reach Redis/Valkey at {shown}: {exc}") from None
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except Exception as exc:  # redis raises its own ConnectionError, TimeoutError, auth errors
        await client.aclose()
        reason = str(exc) or type(exc).__name__
        raise ConnectionError(f"cannot reach Redis/Valkey at {shown}: {reason}") from None
    return client
