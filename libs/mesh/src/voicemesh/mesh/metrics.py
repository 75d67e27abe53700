"""Prometheus metrics every service exposes on /metrics (one registry per service, no globals).

The metric names and label sets are a contract with the dashboards, alert rules and the
autoscalers' adapter rules that ship in the Helm chart (see the issue 9 deploy contract):
change a name here and they go blind. Label values are fixed words, never personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Buckets for per-stage latency: 1 ms .. 10 s, dense where voice latency lives.
STAGE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.45,
    0.6,
    0.8,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
)
# Buckets for the work one 20 ms frame costs (media-edge: port -> VAD -> core -> stt).
FRAME_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05)
# Caller media inter-arrival jitter: a good line is under 5 ms, a bad one 30 ms and more.
JITTER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5)
# Time caller audio spends in a jitter buffer, and its depth: a frame or two on a clean line.
BUFFER_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
# WebSocket ping round trip: loopback is under 1 ms, a carrier across an ocean 100-300 ms.
RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)


class RouterResult(StrEnum):
    """`result` of voicemesh_router_decisions_total: where one role of a session went."""

    LOCAL = "local"  # an instance in the caller's region (or the caller named none)
    SPILLED = "spilled"  # an instance in another region: the caller's had no room
    NO_CAPACITY = "no_capacity"  # no alive, non-draining instance had room
    ERROR = "error"  # the registry (Valkey/Redis) failed


class RegistryState(StrEnum):
    """`state` of voicemesh_registry_instances."""

    SERVING = "serving"  # alive, taking new sessions
    DRAINING = "draining"  # alive, finishing its sessions, taking no new ones
    DEAD = "dead"  # missed its heartbeats; still listed until its record expires


@dataclass
class ServiceMetrics:
    """The metric families of one service.

    Every service creates every family (so the names have one home); a family shows samples
    only in the services that use it. Gauges fed by `watch_queue` are read by the metrics
    HTTP server's thread at scrape time: the callable must only read plain numbers.
    """

    service: str
    registry: CollectorRegistry
    stage_latency: Histogram
    sessions_active: Gauge
    sessions_total: Counter
    errors_total: Counter
    dropped_total: Counter
    frame_processing: Histogram
    # -- the instance (set by the service runner) --
    capacity: Gauge
    instance_info: Gauge
    draining: Gauge
    # -- load (what the autoscalers read) --
    queue_depth: Gauge
    requests_in_flight: Gauge
    # -- calls and caller media (media-edge; stt conceals too) --
    calls_started: Counter
    barge_ins: Counter
    interruptions: Counter
    media_jitter: Histogram
    media_frames_lost: Counter
    media_frames_concealed: Counter
    media_frames_late: Counter
    media_rtt: Histogram
    jitter_buffer_delay: Histogram
    jitter_buffer_depth: Histogram
    # -- placement (session-router) --
    router_decisions: Counter
    registry_instances: Gauge
    # Sessions this process serves now (what graceful drain waits for).
    active: int = field(default=0, init=False)
    _registry_labels: set[tuple[str, str, str]] = field(default_factory=set, init=False, repr=False)

    @classmethod
    def create(cls, service: str, registry: CollectorRegistry | None = None) -> ServiceMetrics:
        reg = registry if registry is not None else CollectorRegistry()

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, ["service", *labels], registry=reg)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["service", *labels], registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, ["service", *labels], buckets=buckets, registry=reg)

        return cls(
            service=service,
            registry=reg,
            stage_latency=histogram(
                "voicemesh_stage_latency_seconds",
                "Latency of one pipeline stage (see docs/architecture.md for the stages).",
                STAGE_BUCKETS,
                "stage",
            ),
            sessions_active=gauge("voicemesh_sessions_active", "Sessions this instance serves now."),
            sessions_total=counter("voicemesh_sessions_total", "Sessions ended, by outcome.", "outcome"),
            errors_total=counter(
                "voicemesh_errors_total",
                "Errors by kind (bad input from a peer, engine failure, ...).",
                "kind",
            ),
            dropped_total=counter(
                "voicemesh_dropped_total",
                "Items dropped by a bounded queue (frames, events), by what was dropped.",
                "what",
            ),
            frame_processing=histogram(
                "voicemesh_frame_processing_seconds",
                "Time spent on one caller frame (VAD, turn decisions, forwarding), by transport.",
                FRAME_BUCKETS,
                "transport",
            ),
            capacity=gauge(
                "voicemesh_capacity", "Sessions this instance accepts at once (VOICEMESH_CAPACITY)."
            ),
            instance_info=gauge(
                "voicemesh_instance_info", "Always 1: where this instance runs.", "region", "zone"
            ),
            draining=gauge("voicemesh_draining", "1 once the instance has begun to drain, else 0."),
            queue_depth=gauge(
                "voicemesh_queue_depth",
                "Work waiting or running: stt decode (decodes), tts synthesis (clauses), events (unacked by NATS).",
                "queue",
            ),
            requests_in_flight=gauge(
                "voicemesh_requests_in_flight", "Requests being answered now (reasoning: responses)."
            ),
            calls_started=counter(
                "voicemesh_calls_started_total", "Calls the edge took, by transport.", "transport"
            ),
            barge_ins=counter(
                "voicemesh_barge_ins_total", "Times the caller cut into the agent's reply.", "transport"
            ),
            interruptions=counter(
                "voicemesh_interruptions_total",
                "Speech over the agent, by verdict: real (a barge-in), backchannel, echo, too_few_words.",
                "verdict",
            ),
            media_jitter=histogram(
                "voicemesh_media_jitter_seconds",
                "Caller media inter-arrival jitter (RFC 3550), sampled once a second per call.",
                JITTER_BUCKETS,
                "transport",
            ),
            media_frames_lost=counter(
                "voicemesh_media_frames_lost_total",
                "20 ms caller frames missing on arrival (sequence or timestamp gaps).",
                "transport",
            ),
            media_frames_concealed=counter(
                "voicemesh_media_frames_concealed_total",
                "20 ms frames filled with silence in place of missing caller audio.",
                "transport",
            ),
            media_frames_late=counter(
                "voicemesh_media_frames_late_total",
                "Caller frames that arrived after their place in the jitter buffer had played: dropped.",
                "transport",
            ),
            jitter_buffer_delay=histogram(
                "voicemesh_jitter_buffer_delay_seconds",
                "Time from a caller packet's arrival to its audio leaving the jitter buffer.",
                BUFFER_BUCKETS,
                "transport",
            ),
            jitter_buffer_depth=histogram(
                "voicemesh_jitter_buffer_depth_seconds",
                "Caller audio held in the jitter buffer, sampled once a second per call.",
                BUFFER_BUCKETS,
                "transport",
            ),
            media_rtt=histogram(
                "voicemesh_media_rtt_seconds",
                "WebSocket ping round trip to the caller or carrier.",
                RTT_BUCKETS,
                "transport",
            ),
            router_decisions=counter(
                "voicemesh_router_decisions_total",
                "Placements of one role of a session, by result (local, spilled, no_capacity, error).",
                "role",
                "result",
            ),
            registry_instances=gauge(
                "voicemesh_registry_instances",
                "Instances in the registry, by role, region and state (as the router reads them).",
                "role",
                "region",
                "state",
            ),
        )

    # -- what every service reports ------------------------------------------------------

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_latency.labels(self.service, stage).observe(max(0.0, seconds))

    def observe_frame(self, transport: str, seconds: float) -> None:
        self.frame_processing.labels(self.service, transport).observe(max(0.0, seconds))

    def session_started(self) -> None:
        self.active += 1
        self.sessions_active.labels(self.service).inc()

    def session_ended(self, outcome: str) -> None:
        self.active -= 1
        self.sessions_active.labels(self.service).dec()
        self.sessions_total.labels(self.service, outcome).inc()

    def error(self, kind: str) -> None:
        self.errors_total.labels(self.service, kind).inc()

    def dropped(self, what: str, count: int = 1) -> None:
        self.dropped_total.labels(self.service, what).inc(count)

    # -- the instance ----------------------------------------------------------------------

    def describe_instance(self, region: str, zone: str, capacity: int) -> None:
        """Where this instance runs and how many sessions it takes; not draining."""
        self.instance_info.labels(self.service, region, zone).set(1)
        self.capacity.labels(self.service).set(capacity)
        self.draining.labels(self.service).set(0)

    def set_draining(self, draining: bool = True) -> None:
        self.draining.labels(self.service).set(1 if draining else 0)

    # -- load ------------------------------------------------------------------------------

    def watch_queue(self, queue: str, depth: Callable[[], float]) -> None:
        """voicemesh_queue_depth{queue} is `depth()` at every scrape (read on the metrics
        server's thread: it must only read numbers the service keeps)."""
        self.queue_depth.labels(self.service, queue).set_function(depth)

    def queue_changed(self, queue: str, delta: float) -> None:
        """Items were added to (delta > 0) or left (delta < 0) a queue."""
        if delta:
            self.queue_depth.labels(self.service, queue).inc(delta)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Counts a request in voicemesh_requests_in_flight while the block runs, however it
        ends (returned, raised, cancelled)."""
        gauge = self.requests_in_flight.labels(self.service)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    # -- calls and caller media --------------------------------------------------------------

    def prepare_media(self, transport: str) -> None:
        """Show the transport's frames lost and concealed at 0 before anything is lost (so
        dashboards and rate() see a zero rather than no data)."""
        for family in (self.media_frames_lost, self.media_frames_concealed):
            family.labels(self.service, transport)

    def prepare_transport(self, transport: str) -> None:
        """`prepare_media`, and the transport's calls, barge-ins, jitter and round trips."""
        self.prepare_media(transport)
        for family in (self.calls_started, self.barge_ins):
            family.labels(self.service, transport)
        for hist in (self.media_jitter, self.media_rtt):
            hist.labels(self.service, transport)

    def prepare_jitter_buffer(self, transport: str) -> None:
        """A transport with a jitter buffer: its late frames, delay and depth show at 0."""
        self.media_frames_late.labels(self.service, transport)
        for hist in (self.jitter_buffer_delay, self.jitter_buffer_depth):
            hist.labels(self.service, transport)

    def call_started(self, transport: str) -> None:
        self.calls_started.labels(self.service, transport).inc()

    def barge_in(self, transport: str) -> None:
        self.barge_ins.labels(self.service, transport).inc()

    def interruption(self, verdict: str) -> None:
        self.interruptions.labels(self.service, verdict).inc()

    def observe_jitter(self, transport: str, seconds: float) -> None:
        self.media_jitter.labels(self.service, transport).observe(max(0.0, seconds))

    def frames_lost(self, transport: str, frames: int) -> None:
        if frames > 0:
            self.media_frames_lost.labels(self.service, transport).inc(frames)

    def frames_concealed(self, transport: str, frames: int) -> None:
        if frames > 0:
            self.media_frames_concealed.labels(self.service, transport).inc(frames)

    def frames_late(self, transport: str, frames: int) -> None:
        if frames > 0:
            self.media_frames_late.labels(self.service, transport).inc(frames)

    def observe_buffer_delay(self, transport: str, seconds: float) -> None:
        self.jitter_buffer_delay.labels(self.service, transport).observe(max(0.0, seconds))

    def observe_buffer_depth(self, transport: str, seconds: float) -> None:
        self.jitter_buffer_depth.labels(self.service, transport).observe(max(0.0, seconds))

    def observe_rtt(self, transport: str, seconds: float) -> None:
        self.media_rtt.labels(self.service, transport).observe(max(0.0, seconds))

    # -- placement ---------------------------------------------------------------------------

    def declare_router_decisions(self, roles: Iterable[str]) -> None:
        """Create every (role, result) series at 0, so the first decision of each kind after a
        start is an increase that rate() and alerts can see."""
        for role in roles:
            for result in RouterResult:
                self.router_decisions.labels(self.service, role, result.value)

    def router_decision(self, role: str, result: RouterResult) -> None:
        self.router_decisions.labels(self.service, role, result.value).inc()

    def set_registry_instances(self, counts: Mapping[tuple[str, str, RegistryState], int]) -> None:
        """Replace the registry census: (role, region, state) -> instances. Label sets not in
        `counts` (instances that vanished) are removed, not left at their last value."""
        current = {(role, region, state.value): n for (role, region, state), n in counts.items()}
        for labels in self._registry_labels - current.keys():
            self.registry_instances.remove(self.service, *labels)
        for labels, n in current.items():
            self.registry_instances.labels(self.service, *labels).set(n)
        self._registry_labels = set(current)
