"""Assign and release sessions in Valkey/Redis with the two Lua scripts (package data).

The scripts are loaded with SCRIPT LOAD and run with EVALSHA; a server that lost them
(restart, SCRIPT FLUSH, failover) answers NOSCRIPT and they are loaded again and retried
(redis-py's AsyncScript does exactly that).

Every script call answers within `timeout_s` or raises `RegistryUnreachable`: a stopped or
stalled Valkey fails the call fast with that reason, never as a caller's deadline running
out. (A call that timed out after the script ran leaves its reservation to the lease.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from voicemesh.mesh.registry import Keys

# How long a reservation lives without a release or a renewing Assign. The edge renews
# every call's reservations every VOICEMESH_ROUTER_RENEW_S (30 s), so this is how long a
# crashed edge's calls hold their slots.
DEFAULT_LEASE_S = 120.0
# The most an Assign or Release waits for Valkey/Redis (connect, one retry and the reply).
DEFAULT_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Reservation:
    service: str
    instance_id: str
    address: str
    region: str


@dataclass(frozen=True)
class Assignment:
    """A session's reservations, in the order the services were asked for."""

    reservations: tuple[Reservation, ...]
    new: int  # reservations this call made; 0 when it only repeated an earlier Assign


class NoCapacity(Exception):
    """No alive, non-draining instance of `service` has room; nothing was reserved."""

    def __init__(self, service: str, eligible: int) -> None:
        self.service = service
        self.eligible = eligible
        if eligible:
            detail = f"all {eligible} alive, non-draining instance(s) are full"
        else:
            detail = "no alive, non-draining instance is registered"
        super().__init__(f"no capacity for service {service!r}: {detail}")


class RegistryUnreachable(Exception):
    """Valkey/Redis refused, dropped or did not answer the call in time."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"the session registry (Valkey/Redis) is unreachable: {cause}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _source(name: str) -> str:
    return resources.files("voicemesh.router").joinpath(name).read_text(encoding="utf-8")


class SessionStore:
    """The router's view of Valkey/Redis: atomic assign and release of sessions."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        keys: Keys | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.redis = redis
        self.keys = keys if keys is not None else Keys()
        self.lease_ms = max(1, round(lease_s * 1000))
        self.timeout_s = timeout_s
        self._assign = redis.register_script(_source("assign.lua"))
        self._release = redis.register_script(_source("release.lua"))

    async def load(self) -> None:
        """SCRIPT LOAD both scripts (a start-up check that the server is there and runs Lua)."""
        for script in (self._assign, self._release):
            script.sha = _text(await self.redis.script_load(script.script))

    async def assign(self, session_id: str, region: str, services: Sequence[str], now: float) -> Assignment:
        """Reserve one slot per service (distinct names) for the session, all or none.
        `now` is the wall clock in unix seconds. Raises NoCapacity naming the first service
        without room, RegistryUnreachable when Valkey/Redis does not answer."""
        now_ms = round(now * 1000)
        reply = await self._run(
            self._assign,
            keys=[self.keys.session(session_id)],
            args=[
                self.keys.prefix,
                session_id,
                region,
                now_ms,
                now_ms + self.lease_ms,
                self.lease_ms,
                *services,
            ],
        )
        if int(reply[0]) == 0:
            raise NoCapacity(_text(reply[1]), int(reply[2]))
        rest = [_text(v) for v in reply[2:]]
        reservations = tuple(Reservation(*rest[i : i + 4]) for i in range(0, len(rest), 4))
        return Assignment(reservations, int(reply[1]))

    async def release(self, session_id: str) -> int:
        """Free the session's slots; returns how many were freed (0 for an unknown session).
        Raises RegistryUnreachable when Valkey/Redis does not answer."""
        freed = await self._run(
            self._release, keys=[self.keys.session(session_id)], args=[self.keys.prefix, session_id]
        )
        return int(freed)

    async def _run(self, script: AsyncScript, *, keys: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await script(keys=keys, args=args)
        except TimeoutError:
            raise RegistryUnreachable(f"no answer in {self.timeout_s:g} s") from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RegistryUnreachable(str(exc) or type(exc).__name__) from None
