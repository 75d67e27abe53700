"""The process runner every voicemesh service shares.

Start-up, in order: the mTLS credentials (`mtls`; refused unless they are this service's,
issued by the mesh CA and in date), metrics endpoint (capacity, region and zone already
set), Redis/Valkey, NATS JetStream, gRPC server (mTLS, each caller checked by
`mtls.Authorizer`) with the health service (NOT_SERVING) and, if VOICEMESH_HEALTH_PORT is
set, a plaintext health-only port, the service's own `start()` (models load here),
registry entry, then SERVING. Shutdown (SIGTERM/SIGINT): `voicemesh_draining` 1,
NOT_SERVING, draining in the registry, wait for live sessions (up to `drain_timeout_s`),
leave the registry, `server.stop(grace)`. SIGUSR1 (DRAIN_SIGNAL, sent by
`python -m voicemesh.mesh.probe drain`, the Kubernetes preStop hook) begins the same drain
without stopping, so the hook can wait for the calls before Kubernetes sends SIGTERM.
The health service's "" (and each service name) is readiness; LIVENESS stays SERVING while
the process runs, so a liveness probe does not restart a pod that drains; DRAINED turns
SERVING once a drain has no live session left.
Anything that prevents start-up is one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NoReturn, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.trace import Tracer
from prometheus_client import start_http_server
from redis.asyncio import Redis

from .aio import cancel_and_wait
from .events import EventSink, JetStreamEvents
from .grpcutil import SERVER_OPTIONS
from .logs import configure_logging
from .metrics import ServiceMetrics
from .mtls import Authorizer, MeshTls
from .registry import InstanceInfo, InstanceRegistry, connect_redis
from .settings import MeshSettings, SettingsError, load_settings
from .tracing import make_tracer_provider

log = logging.getLogger(__name__)

# gRPC health service name for liveness probes: SERVING from start until the process exits.
LIVENESS = "voicemesh.liveness"
# SERVING once a draining instance has no live session left (what the preStop hook waits for).
DRAINED = "voicemesh.drained"
# Begins the drain without stopping (see the module docstring).
DRAIN_SIGNAL = signal.SIGUSR1


class StartupError(RuntimeError):
    """The service cannot start; the message says why in one line."""


@dataclass(frozen=True)
class MeshContext:
    """What a service gets from the runner."""

    settings: MeshSettings
    metrics: ServiceMetrics
    events: EventSink
    tracer: Tracer
    redis: Redis
    # This process's mTLS identity for the channels it opens (None: VOICEMESH_MESH_TLS=off).
    tls: MeshTls | None = None


class MeshService(ABC):
    """One service inside the runner. Subclasses own their servicers and engines."""

    name: ClassVar[str]
    # gRPC service names reported by the health service besides "" (the whole server).
    health_names: ClassVar[tuple[str, ...]] = ()
    # True for a service that cannot take a new session without the registry (the router):
    # its readiness follows its heartbeat (see `_heartbeat`).
    needs_registry: ClassVar[bool] = False

    @abstractmethod
    async def start(self) -> None:
        """Load models and open resources; the instance reports SERVING only after this."""

    @abstractmethod
    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the service's servicers."""

    def active_sessions(self) -> int:
        """Live sessions; by default what the service counted with `metrics.session_started()`."""
        ctx = getattr(self, "ctx", None)
        return ctx.metrics.active if isinstance(ctx, MeshContext) else 0

    async def drain(self) -> None:
        """Stop taking new sessions (live ones go on)."""

    async def close(self) -> None:
        """Release what start() opened."""


S = TypeVar("S", bound=MeshSettings)
Factory = Callable[[MeshContext], MeshService]


async def serve(
    name: str,
    settings: MeshSettings,
    factory: Factory,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
    drain_request: asyncio.Event | None = None,
) -> None:
    """Run one service until `stop` is set. Raises StartupError when it cannot start.

    `drain_request` (SIGUSR1 in a service process; the Kubernetes preStop hook sends it)
    starts the drain without stopping: NOT_SERVING, draining in the registry, no new
    sessions, while live ones go on. `stop` (SIGTERM) drains too if that has not begun, waits
    for live sessions until `drain_timeout_s` after the drain began, then stops.
    """
    tls = load_mesh_tls(name, settings)
    metrics = ServiceMetrics.create(name)
    metrics.describe_instance(settings.region, settings.zone, settings.capacity)
    metrics_server = None
    if settings.metrics_port:
        try:
            metrics_server, _ = start_http_server(
                settings.metrics_port, addr=settings.bind_host, registry=metrics.registry
            )
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on {settings.bind_host}:{settings.metrics_port}: {exc.strerror or exc}"
            ) from None
    redis: Redis | None = None
    events: JetStreamEvents | None = None
    server: grpc.aio.Server | None = None
    health_server: grpc.aio.Server | None = None
    service: MeshService | None = None
    registry: InstanceRegistry | None = None
    info: InstanceInfo | None = None
    heartbeat: asyncio.Task[None] | None = None
    try:
        try:
            redis = await connect_redis(settings.redis_url)
            events = JetStreamEvents(name, settings.instance_id, metrics, redact=settings.events_redact)
            await events.connect(
                settings.nats_url,
                max_age_s=settings.events_max_age_s,
                create_stream=settings.events_create_stream,
            )
        except ConnectionError as exc:
            raise StartupError(str(exc)) from None
        provider = make_tracer_provider(name, settings.instance_id, settings.otel_exporter)
        tracer = provider.get_tracer(f"voicemesh.{name}")
        ctx = MeshContext(settings, metrics, events, tracer, redis, tls)
        try:
            service = factory(ctx)
        except (ValueError, OSError) as exc:
            raise StartupError(str(exc)) from None

        def denied(identity: str, method: str) -> None:
            metrics.error("grpc_denied")
            log.warning("grpc call refused", extra={"identity": identity, "method": method})

        interceptors = [Authorizer(denied)] if tls is not None else []
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        names = ("", *service.health_names)
        for hn in names:
            await health.set(hn, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Liveness answers SERVING while the process is up, draining included: a liveness
        # probe on "" would restart a pod that is draining its calls.
        await health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await health.set(DRAINED, health_pb2.HealthCheckResponse.NOT_SERVING)
        service.add_to_server(server)
        try:
            if tls is not None:
                port = server.add_secure_port(settings.grpc_bind, tls.server_credentials())
            else:
                port = server.add_insecure_port(settings.grpc_bind)
        except RuntimeError:
            raise StartupError(f"cannot listen on {settings.grpc_bind} (port in use?)") from None
        await server.start()
        if settings.health_port:
            health_server = grpc.aio.server(options=SERVER_OPTIONS)
            health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
            bind = f"{settings.bind_host}:{settings.health_port}"
            try:
                health_server.add_insecure_port(bind)
            except RuntimeError:
                raise StartupError(f"cannot serve health on {bind} (port in use?)") from None
            await health_server.start()

        started = time.monotonic()
        try:
            await service.start()
        except (ValueError, OSError) as exc:
            raise StartupError(str(exc)) from None
        log.info("service started", extra={"port": port, "start_s": round(time.monotonic() - started, 2)})

        registry = InstanceRegistry(redis, ttl_s=settings.registry_ttl_s)
        info = InstanceInfo(
            service=name,
            instance_id=settings.instance_id,
            address=settings.advertise_address(port),
            region=settings.region,
            zone=settings.zone,
            capacity=settings.capacity,
        )
        await registry.register(info)
        readiness = (
            _RegistryReadiness(
                health, names, lambda: stop.is_set() or bool(drain_request and drain_request.is_set())
            )
            if service.needs_registry
            else None
        )
        heartbeat = asyncio.create_task(
            _heartbeat(registry, info, settings.heartbeat_interval_s, metrics, readiness), name="heartbeat"
        )
        for hn in names:
            await health.set(hn, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"address": info.address, "instance": info.instance_id})
        if on_ready is not None:
            on_ready(port)

        await _first_of(stop, drain_request)

        metrics.set_draining()
        log.info("draining", extra={"active": service.active_sessions()})
        deadline = time.monotonic() + settings.drain_timeout_s
        for hn in names:
            await health.set(hn, health_pb2.HealthCheckResponse.NOT_SERVING)
        with contextlib.suppress(Exception):
            await registry.set_draining(info, True)
        await service.drain()
        while service.active_sessions() > 0 and not (stop.is_set() and time.monotonic() >= deadline):
            await asyncio.sleep(0.05)
        if not service.active_sessions():
            await health.set(DRAINED, health_pb2.HealthCheckResponse.SERVING)
        await stop.wait()
        while service.active_sessions() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if service.active_sessions():
            log.warning("drain timed out", extra={"active": service.active_sessions()})
    finally:
        await cancel_and_wait(heartbeat)
        if registry is not None and info is not None:
            with contextlib.suppress(Exception):
                await registry.deregister(info)
        if server is not None:
            await server.stop(grace=1.0)
        if health_server is not None:
            await health_server.stop(grace=None)
        if service is not None:
            await service.close()
        if events is not None:
            await events.close()
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        if info is not None:  # it served; a failed start says why in its one error line
            log.info("stopped")


def load_mesh_tls(name: str, settings: MeshSettings) -> MeshTls | None:
    """This service's mTLS credentials, checked; None (with a warning) when switched off."""
    if settings.mesh_tls == "off":
        log.warning("internal gRPC runs in the clear: VOICEMESH_MESH_TLS=off")
        return None
    if not settings.mesh_tls_dir:
        raise StartupError(
            "mesh TLS is on but VOICEMESH_MESH_TLS_DIR is not set: name a directory with this "
            "service's ca.crt, tls.crt and tls.key, or set VOICEMESH_MESH_TLS=off to run the "
            "internal plane in the clear"
        )
    try:
        tls = MeshTls.load(Path(settings.mesh_tls_dir), dt.datetime.now(dt.UTC))
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    if tls.identity != name:
        raise StartupError(
            f"mesh TLS: the certificate in {settings.mesh_tls_dir} is {tls.identity!r}'s, not {name!r}'s"
        )
    return tls


async def _first_of(*events: asyncio.Event | None) -> None:
    """Return once any of `events` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events if e is not None]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


@dataclass(frozen=True)
class _RegistryReadiness:
    """The readiness of a service that needs the registry for every new session: set by its
    heartbeat, never SERVING once a drain has begun (`draining()`)."""

    health: HealthServicer
    names: tuple[str, ...]
    draining: Callable[[], bool]

    async def set(self, reachable: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if reachable
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for hn in self.names:
            if self.draining():
                return  # the drain's NOT_SERVING stands
            await self.health.set(hn, status)
        if reachable and self.draining():  # a drain began while this was being set
            for hn in self.names:
                await self.health.set(hn, health_pb2.HealthCheckResponse.NOT_SERVING)


async def _heartbeat(
    registry: InstanceRegistry,
    info: InstanceInfo,
    interval_s: float,
    metrics: ServiceMetrics,
    readiness: _RegistryReadiness | None = None,
) -> None:
    """Keep the instance alive in the registry: a beat every `interval_s`, each given at most
    the interval (and at least 1 s), so a stalled Valkey fails it rather than hangs it.

    A failed beat is counted (`voicemesh_errors_total{kind="heartbeat"}`) and tried again at
    the next interval (a beat re-creates a record the registry lost); it is logged when the
    failures begin and when a beat gets through again. The instance stays SERVING: stt, tts
    and reasoning serve their live calls (and any call the router still places) without
    Valkey, and NOT_SERVING would only have an orchestrator pull them from their Service,
    breaking those calls. Only a service that cannot take any new session without the
    registry (`MeshService.needs_registry`: the router) has `readiness`, NOT_SERVING while
    beats fail and SERVING again once one gets through.
    """
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with asyncio.timeout(max(interval_s, 1.0)):
                await registry.heartbeat(info)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.error("heartbeat")
            if not failing:
                failing = True
                log.warning("heartbeat failed; retrying", extra={"error": str(exc) or type(exc).__name__})
                if readiness is not None:
                    await readiness.set(False)
            continue
        if failing:
            failing = False
            log.info("heartbeat recovered")
            if readiness is not None:
                await readiness.set(True)


def run_main(name: str, settings_cls: type[S], factory: Callable[[S], Factory]) -> NoReturn:
    """`main()` of a service process: settings from the environment, run until a signal.

    `factory(settings)` returns the service factory, so a service can validate its own
    settings (and fail with a clear line) before anything starts.
    """
    prog = f"voicemesh-{name}"
    try:
        settings = load_settings(settings_cls)
        configure_logging(name, settings.log_format, settings.log_level)
        service_factory = factory(settings)
    except (SettingsError, StartupError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)

    async def main() -> None:
        stop = asyncio.Event()
        drain_request = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(DRAIN_SIGNAL, drain_request.set)
        await serve(name, settings, service_factory, stop, drain_request=drain_request)

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
