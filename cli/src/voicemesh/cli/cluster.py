"""`voicemesh cluster`, the pure part: names, joining pods with registry records, when
`scale` refuses and what a drain waits for.

Nothing here talks to Kubernetes or Valkey or reads a clock. `cluster_kube` turns the
official client's objects into the small records below; `cluster_cmd` fetches, calls these
functions and prints what they return, laid out by `cluster_view` (the text table and JSON).

How pods meet the registry: the chart sets VOICEMESH_INSTANCE_ID from the pod's name, so a
registry instance id is the pod name. A pod of the release with no registry record is still
starting, failed to start or has already left; a registry record with no pod is left over
from a pod that is gone (it expires after the registry's retain time) or belongs to another
cluster sharing the registry (another region: those are counted, not listed).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from voicemesh.mesh.registry import InstanceState

from .localmesh import SERVICES as _LOCAL_SERVICES

# The chart's service keys = the registry's service names (in `voicemesh up`'s start order).
SERVICES: tuple[str, ...] = tuple(name for name, _ in _LOCAL_SERVICES)
# The services the session-router reserves slots on (leases in the registry): the roles the
# media-edge asks for (voicemesh.edge.session.SERVICES; a unit test holds the two equal).
# media-edge and session-router hold no leases: the registry does not count their calls.
ROUTED_SERVICES: tuple[str, ...] = ("stt", "reasoning", "tts")

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
CHART_NAME = "voicemesh"
ZONE_LABEL = "topology.kubernetes.io/zone"


# -- names ---------------------------------------------------------------------------------


def _trunc63(name: str) -> str:
    """Helm's `trunc 63 | trimSuffix "-"`."""
    return name[:63].removesuffix("-")


def fullname(release: str) -> str:
    """The chart's fullname (`voicemesh.fullname`): the release name if it contains
    "voicemesh", else `<release>-voicemesh`; 63 characters at most."""
    return _trunc63(release if CHART_NAME in release else f"{release}-{CHART_NAME}")


def deployment_name(release: str, service: str) -> str:
    """`<fullname>-<service>`, 63 characters at most (`voicemesh.componentName`)."""
    return _trunc63(f"{fullname(release)}-{service}")


def release_selector(release: str) -> str:
    """The label selector of every pod and Deployment of the release."""
    return f"{LABEL_INSTANCE}={release},{LABEL_NAME}={CHART_NAME}"


def in_release(labels: Mapping[str, str], release: str) -> bool:
    return labels.get(LABEL_INSTANCE) == release and labels.get(LABEL_NAME) == CHART_NAME


def unknown_service_error(service: str) -> str | None:
    """None for a service key of the chart, else the message naming the valid ones."""
    if service in SERVICES:
        return None
    return f"unknown service {service!r}; the services are: {', '.join(SERVICES)}"


# -- what the Kubernetes API said (filled by cluster_kube) ----------------------------------


@dataclass(frozen=True)
class PodInfo:
    name: str
    labels: Mapping[str, str]
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    ready: bool  # the pod's Ready condition
    containers_ready: int
    containers: int
    node: str = ""  # "" until scheduled
    deleting: bool = False  # deletionTimestamp is set
    grace_s: int | None = None  # terminationGracePeriodSeconds

    @property
    def service(self) -> str:
        return self.labels.get(LABEL_COMPONENT, "")

    @property
    def zone_label(self) -> str:
        return self.labels.get(ZONE_LABEL, "")

    @property
    def shown_phase(self) -> str:
        return "Terminating" if self.deleting else (self.phase or "Unknown")


@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    labels: Mapping[str, str]
    desired: int
    ready: int

    @property
    def service(self) -> str:
        return self.labels.get(LABEL_COMPONENT, "")


@dataclass(frozen=True)
class HpaInfo:
    name: str
    target_kind: str
    target_name: str
    min_replicas: int
    max_replicas: int


def hpa_for(hpas: Iterable[HpaInfo], deployment: str) -> HpaInfo | None:
    """The HPA whose scaleTargetRef is the Deployment `deployment` (the first by name)."""
    matching = sorted(
        (h for h in hpas if h.target_kind == "Deployment" and h.target_name == deployment),
        key=lambda h: h.name,
    )
    return matching[0] if matching else None


# -- status: pods + registry -> sections ----------------------------------------------------


class RegistryState(enum.StrEnum):
    SERVING = "serving"  # alive, taking new calls
    DRAINING = "draining"  # alive, no new calls
    DEAD = "dead"  # no heartbeat within the registry's ttl
    NO_RECORD = "no record"  # a mesh service's pod with nothing in the registry
    NOT_READ = "not read"  # the registry was not reached
    NOT_A_SERVICE = "-"  # a pod of the release that does not register (Valkey, NATS, tests)


def registry_state(state: InstanceState | None, *, service: str, registry_read: bool) -> RegistryState:
    if service not in SERVICES:
        return RegistryState.NOT_A_SERVICE
    if not registry_read:
        return RegistryState.NOT_READ
    if state is None:
        return RegistryState.NO_RECORD
    if not state.alive:
        return RegistryState.DEAD
    return RegistryState.DRAINING if state.draining else RegistryState.SERVING


@dataclass(frozen=True)
class PodRow:
    """A pod of the release, a registry record, or both (instance id == pod name)."""

    name: str
    service: str
    pod: PodInfo | None
    instance: InstanceState | None
    state: RegistryState
    zone: str

    @property
    def active(self) -> int | None:
        """Sessions the router has placed here; None where the registry does not count them."""
        if self.instance is None or self.service not in ROUTED_SERVICES:
            return None
        return self.instance.active


@dataclass(frozen=True)
class ServiceSection:
    service: str
    deployment: DeploymentInfo | None
    hpa: HpaInfo | None
    rows: tuple[PodRow, ...]


@dataclass(frozen=True)
class RegistryReport:
    """Whether and where the registry was read; `error` says why it was not."""

    url: str  # password hidden; "" when none was given
    read: bool
    error: str = ""
    instances: int = 0


@dataclass(frozen=True)
class ClusterStatus:
    namespace: str
    release: str
    registry: RegistryReport
    sections: tuple[ServiceSection, ...]
    # Registry instances without a pod here, in regions none of this release's pods are in.
    elsewhere: Mapping[str, int] = field(default_factory=dict)


def nodes_to_look_up(pods: Iterable[PodInfo], instances: Iterable[InstanceState] | None) -> list[str]:
    """Nodes whose zone label is needed: those of pods with no zone in their registry
    record nor on the pod itself."""
    zone_by_id = {s.info.instance_id: s.info.zone for s in instances or ()}
    return sorted({p.node for p in pods if p.node and not zone_by_id.get(p.name) and not p.zone_label})


def _section_order(service: str) -> tuple[int, str]:
    return (SERVICES.index(service), "") if service in SERVICES else (len(SERVICES), service)


def build_status(
    *,
    namespace: str,
    release: str,
    pods: Iterable[PodInfo],
    deployments: Iterable[DeploymentInfo],
    hpas: Iterable[HpaInfo],
    node_zones: Mapping[str, str],
    instances: Sequence[InstanceState] | None,
    registry: RegistryReport,
) -> ClusterStatus:
    """One section per component of the release (the five services first, in the order of
    SERVICES), each with its Deployment, its HPA and a row per pod, then one per registry
    record with no pod. Pods and Deployments of other releases are left out (whatever the
    API returned). `instances` is None when the registry was not read.

    A pod's zone: its registry record's, else the pod's topology label, else its node's.
    """
    own_pods = [p for p in pods if in_release(p.labels, release)]
    own_deployments = [d for d in deployments if in_release(d.labels, release)]
    hpas = list(hpas)
    by_id = {s.info.instance_id: s for s in instances or ()}
    pod_names = {p.name for p in own_pods}
    local_regions = {by_id[p.name].info.region for p in own_pods if p.name in by_id}

    rows: dict[str, list[PodRow]] = {}
    for pod in sorted(own_pods, key=lambda p: p.name):
        inst = by_id.get(pod.name)
        zone = (inst.info.zone if inst else "") or pod.zone_label or node_zones.get(pod.node, "")
        state = registry_state(inst, service=pod.service, registry_read=instances is not None)
        rows.setdefault(pod.service, []).append(PodRow(pod.name, pod.service, pod, inst, state, zone))

    elsewhere: dict[str, int] = {}
    for inst in instances or ():
        if inst.info.instance_id in pod_names:
            continue
        if local_regions and inst.info.region not in local_regions:
            elsewhere[inst.info.region] = elsewhere.get(inst.info.region, 0) + 1
            continue
        service = inst.info.service
        state = registry_state(inst, service=service, registry_read=True)
        rows.setdefault(service, []).append(
            PodRow(inst.info.instance_id, service, None, inst, state, inst.info.zone)
        )

    # one Deployment per component (the first by name, should a release ever have two)
    deployment_of = {d.service: d for d in sorted(own_deployments, key=lambda d: d.name, reverse=True)}
    services = sorted(set(rows) | set(deployment_of), key=_section_order)
    sections = []
    for service in services:
        dep = deployment_of.get(service)
        sections.append(
            ServiceSection(
                service=service,
                deployment=dep,
                hpa=hpa_for(hpas, dep.name) if dep else None,
                rows=tuple(rows.get(service, ())),
            )
        )
    return ClusterStatus(namespace, release, registry, tuple(sections), dict(sorted(elsewhere.items())))


# -- scale ----------------------------------------------------------------------------------


def hpa_refusal(hpa: HpaInfo, service: str, replicas: int) -> str:
    """Why `scale` refuses without --force when an HPA manages the Deployment."""
    return (
        f"HPA {hpa.name} manages {hpa.target_name} ({hpa.min_replicas}-{hpa.max_replicas} replicas) "
        f"and would undo a scale to {replicas} within its next sync (about 15 s), after pods "
        f"were drained or started for nothing; change the chart's services.{service}.autoscaling "
        f"minReplicas/maxReplicas instead, or pass --force"
    )


def hpa_forced_note(hpa: HpaInfo, replicas: int) -> str:
    if replicas == 0:
        return f"note: with 0 replicas HPA {hpa.name} stops scaling until the Deployment is scaled up again"
    return (
        f"note: HPA {hpa.name} will set the replicas back within {hpa.min_replicas}-"
        f"{hpa.max_replicas} at its next sync"
    )


# -- drain ----------------------------------------------------------------------------------


def drain_target_error(pod: PodInfo | None, name: str, namespace: str, release: str) -> str | None:
    """None when `pod` is a mesh service's pod of the release, else what is wrong."""
    if pod is None:
        return f"pod {name} not found in namespace {namespace}"
    if not in_release(pod.labels, release):
        found = ", ".join(f"{k}={pod.labels[k]}" for k in (LABEL_INSTANCE, LABEL_NAME) if k in pod.labels)
        return (
            f"pod {name} is not part of release {release} "
            f"(its labels: {found or 'no ' + LABEL_INSTANCE + ' or ' + LABEL_NAME})"
        )
    if pod.service not in SERVICES:
        return (
            f"pod {name} is the release's {pod.service or 'unlabelled component'}, not a mesh service; "
            f"drain applies to pods of: {', '.join(SERVICES)}"
        )
    return None


class WaitFor(enum.Enum):
    """What `drain` waits for before it deletes the pod."""

    SESSIONS = "the router's sessions on the instance to end"
    NOTHING_NOT_ROUTED = "nothing: the router places no sessions on this service"
    NOTHING_NO_RECORD = "nothing: the instance has no registry record, so the router gives it no calls"
    NOTHING_DEAD = "nothing: the instance sends no heartbeat, so its leases are stale"


def plan_drain(service: str, state: InstanceState | None) -> WaitFor:
    """Choose what to wait for. Only stt, reasoning and tts carry leases the router placed;
    media-edge takes calls from its Kubernetes Service and session-router holds no calls:
    deleting such a pod starts its own drain (not ready at once, live calls finish within
    terminationGracePeriodSeconds). A dead instance's leases only run out by their lease
    time (hours): waiting for them is waiting for nothing."""
    if service not in ROUTED_SERVICES:
        return WaitFor.NOTHING_NOT_ROUTED
    if state is None:
        return WaitFor.NOTHING_NO_RECORD
    if not state.alive:
        return WaitFor.NOTHING_DEAD
    return WaitFor.SESSIONS


class DrainOutcome(enum.Enum):
    DRAINED = "drained"  # no session left
    TIMED_OUT = "timed out"  # --timeout passed with sessions left
    LEFT = "left"  # the record vanished (the instance deregistered: it stopped)
    DIED = "died"  # the instance stopped sending heartbeats


@dataclass(frozen=True)
class DrainStep:
    outcome: DrainOutcome | None  # None: keep waiting
    message: str | None  # a progress line to print, or None


class DrainWatch:
    """Decides, from each registry reading, whether the wait is over and what to report:
    a line when the session count changes and every `report_every_s` otherwise.
    Times are seconds on any monotonic clock; the caller reads the clock."""

    def __init__(self, pod: str, started: float, timeout_s: float, report_every_s: float = 10.0) -> None:
        self.pod = pod
        self.started = started
        self.deadline = started + timeout_s
        self.timeout_s = timeout_s
        self.report_every_s = report_every_s
        self._last_active: int | None = None
        self._last_report = started
        self.active: int | None = None

    def remaining(self, now: float) -> float:
        return max(0.0, self.deadline - now)

    def observe(self, now: float, state: InstanceState | None) -> DrainStep:
        waited = now - self.started
        if state is None:
            return DrainStep(DrainOutcome.LEFT, f"{self.pod} left the registry after {waited:.0f} s")
        self.active = state.active
        if state.active == 0:
            return DrainStep(DrainOutcome.DRAINED, f"{self.pod}: no sessions left after {waited:.0f} s")
        if not state.alive:
            return DrainStep(
                DrainOutcome.DIED,
                f"{self.pod} stopped sending heartbeats with {state.active} session(s) on it",
            )
        if now >= self.deadline:
            return DrainStep(
                DrainOutcome.TIMED_OUT,
                f"{self.pod}: {state.active} session(s) still active after {self.timeout_s:.0f} s",
            )
        changed = state.active != self._last_active
        due = now - self._last_report >= self.report_every_s
        self._last_active = state.active
        if not (changed or due):
            return DrainStep(None, None)
        self._last_report = now
        return DrainStep(
            None,
            f"waiting for {self.pod}: {state.active} session(s) active, "
            f"{self.remaining(now):.0f} s left of {self.timeout_s:.0f} s",
        )
