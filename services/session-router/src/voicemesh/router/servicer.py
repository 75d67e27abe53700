"""SessionRouter gRPC servicer: validates requests, runs the store's scripts, maps outcomes to
gRPC status codes, and reports metrics, events and spans.

Every Assign that places a session counts one decision per role in
`voicemesh_router_decisions_total{role,result}`: `local` when the instance is in the caller's
region (or the caller named none), `spilled` when it is in another; a refusal counts
`no_capacity` for the role that had no room, a registry failure `error` for every role asked
for. A repeated Assign that only renews the session's leases decides nothing and counts nothing;
one that replaces a reservation on a dead instance counts every role of its answer again (the
script does not say which roles it re-placed).

A registry that cannot be reached (stopped, stalled) fails Assign and Release within the
store's timeout with UNAVAILABLE, the message naming the registry as unreachable, so the edge
tells the caller the true reason rather than `no_capacity`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc
import redis.asyncio as aioredis
from opentelemetry import trace
from redis.exceptions import RedisError

from voicemesh.mesh.events import EventSink, subject_for
from voicemesh.mesh.metrics import RouterResult, ServiceMetrics
from voicemesh.mesh.registry import PLACED_ROLES, Keys, check_service_name
from voicemesh.mesh.tracing import incoming_context
from voicemesh.v1 import events_pb2, router_pb2, router_pb2_grpc

from .store import (
    DEFAULT_LEASE_S,
    DEFAULT_TIMEOUT_S,
    Assignment,
    NoCapacity,
    RegistryUnreachable,
    SessionStore,
)

log = logging.getLogger(__name__)

MAX_SERVICES = 16


def _check_session_id(session_id: str) -> str | None:
    """Why the id is unusable, or None. Ids become NATS subject tokens and Redis keys."""
    if not session_id:
        return "session_id is empty"
    if len(session_id) > 128:
        return "session_id is longer than 128 characters"
    try:
        subject_for(session_id, "assigned")
    except ValueError:
        return "session_id contains '.', '*', '>' or whitespace"
    return None


def _distinct_services(names: list[str]) -> list[str]:
    """The requested services in order, without repeats. Raises ValueError naming a bad one."""
    if not names:
        raise ValueError("services is empty (e.g. ['stt', 'reasoning', 'tts'])")
    out = list(dict.fromkeys(names))
    if len(out) > MAX_SERVICES:
        raise ValueError(f"more than {MAX_SERVICES} distinct services requested")
    for name in out:
        check_service_name(name)
    return out


def placement(caller_region: str, instance_region: str) -> RouterResult:
    """`local` for the caller's region (or a caller that named none), else `spilled`."""
    if not caller_region or instance_region == caller_region:
        return RouterResult.LOCAL
    return RouterResult.SPILLED


class RouterServicer(router_pb2_grpc.SessionRouterServicer):
    """Assign/Release over gRPC. `clock` gives unix seconds (lease deadlines); `timeout_s`
    bounds each call's wait for Valkey/Redis."""

    def __init__(
        self,
        redis: aioredis.Redis,
        metrics: ServiceMetrics,
        events: EventSink,
        tracer: trace.Tracer,
        *,
        keys: Keys | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = SessionStore(redis, keys=keys, lease_s=lease_s, timeout_s=timeout_s)
        self._metrics = metrics
        metrics.declare_router_decisions(PLACED_ROLES)
        self._events = events
        self._tracer = tracer
        self._clock = clock

    async def start(self) -> None:
        """Load the Lua scripts; call before serving (fails if Redis/Valkey is unreachable)."""
        await self.store.load()

    async def Assign(
        self, request: router_pb2.AssignRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.AssignResponse:
        started = time.perf_counter()
        sid = request.session_id
        problem = _check_session_id(sid)
        try:
            services = _distinct_services(list(request.services))
        except ValueError as exc:
            problem = problem or str(exc)
        if problem is not None:
            self._metrics.error("invalid_request")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        ctx = incoming_context(context.invocation_metadata())
        with self._tracer.start_as_current_span("router.assign", context=ctx) as span:
            span.set_attribute("voicemesh.session_id", sid)
            span.set_attribute("voicemesh.region", request.region)
            try:
                result = await self.store.assign(sid, request.region, services, self._clock())
            except NoCapacity as exc:
                span.set_attribute("voicemesh.no_capacity", exc.service)
                self._metrics.router_decision(exc.service, RouterResult.NO_CAPACITY)
                self._metrics.error("no_capacity")
                log.warning("no capacity", extra={"session_id": sid, "service": exc.service})
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            except RegistryUnreachable as exc:
                self._decided_error(services)
                self._metrics.error("redis_unavailable")
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except RedisError as exc:
                self._decided_error(services)
                self._metrics.error("redis_error")
                log.error("assign script failed", extra={"session_id": sid, "error": str(exc)})
                await context.abort(grpc.StatusCode.INTERNAL, "assignment failed in Redis/Valkey")
        self._decided(request.region, result)
        assignments = [
            router_pb2.Assignment(
                service=r.service, instance_id=r.instance_id, address=r.address, region=r.region
            )
            for r in result.reservations
        ]
        if result.new:
            self._events.emit(sid, assigned=events_pb2.Assigned(assignments=assignments))
        self._metrics.observe_stage("assign", time.perf_counter() - started)
        return router_pb2.AssignResponse(assignments=assignments)

    def _decided(self, caller_region: str, result: Assignment) -> None:
        if not result.new:
            return  # only the leases were renewed
        for r in result.reservations:
            self._metrics.router_decision(r.service, placement(caller_region, r.region))

    def _decided_error(self, services: list[str]) -> None:
        for service in services:
            self._metrics.router_decision(service, RouterResult.ERROR)

    async def Release(
        self, request: router_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ReleaseResponse:
        started = time.perf_counter()
        sid = request.session_id
        problem = _check_session_id(sid)
        if problem is not None:
            self._metrics.error("invalid_request")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        ctx = incoming_context(context.invocation_metadata())
        with self._tracer.start_as_current_span("router.release", context=ctx) as span:
            span.set_attribute("voicemesh.session_id", sid)
            try:
                freed = await self.store.release(sid)
            except RegistryUnreachable as exc:  # the edge goes on; the lease frees the slots
                self._metrics.error("redis_unavailable")
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except RedisError as exc:
                self._metrics.error("redis_error")
                log.error("release script failed", extra={"session_id": sid, "error": str(exc)})
                await context.abort(grpc.StatusCode.INTERNAL, "release failed in Redis/Valkey")
        self._metrics.observe_stage("release", time.perf_counter() - started)
        return router_pb2.ReleaseResponse(released=freed)
