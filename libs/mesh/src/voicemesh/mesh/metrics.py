"""Prometheus metrics every service exposes on /metrics (one registry per service, no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class ServiceMetrics:
    """The metric families of one service. Label values are fixed words, never personal data."""

    service: str
    registry: CollectorRegistry
    stage_latency: Histogram
    sessions_active: Gauge
    sessions_total: Counter
    errors_total: Counter
    dropped_total: Counter
    frame_processing: Histogram
    # Sessions this process serves now (what graceful drain waits for).
    active: int = field(default=0, init=False)

    @classmethod
    def create(cls, service: str, registry: CollectorRegistry | None = None) -> ServiceMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            service=service,
            registry=reg,
            stage_latency=Histogram(
                "voicemesh_stage_latency_seconds",
                "Latency of one pipeline stage (see docs/architecture.md for the stages).",
                ["service", "stage"],
                buckets=STAGE_BUCKETS,
                registry=reg,
            ),
            sessions_active=Gauge(
                "voicemesh_sessions_active",
                "Sessions this instance serves now.",
                ["service"],
                registry=reg,
            ),
            sessions_total=Counter(
                "voicemesh_sessions_total",
                "Sessions ended, by outcome.",
                ["service", "outcome"],
                registry=reg,
            ),
            errors_total=Counter(
                "voicemesh_errors_total",
                "Errors by kind (bad input from a peer, engine failure, ...).",
                ["service", "kind"],
                registry=reg,
            ),
            dropped_total=Counter(
                "voicemesh_dropped_total",
                "Items dropped by a bounded queue (frames, events), by what was dropped.",
                ["service", "what"],
                registry=reg,
            ),
            frame_processing=Histogram(
                "voicemesh_frame_processing_seconds",
                "Time spent on one caller frame (VAD, turn decisions, forwarding), by transport.",
                ["service", "transport"],
                buckets=FRAME_BUCKETS,
                registry=reg,
            ),
        )

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
