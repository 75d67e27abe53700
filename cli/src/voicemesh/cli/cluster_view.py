"""`voicemesh cluster status`, what the operator reads: the text table and the JSON.

Pure functions of a `cluster.ClusterStatus`: no Kubernetes, no Valkey, no clock. `cluster`
decides what the status is; this module only lays it out.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cluster import SERVICES, ClusterStatus, PodRow, RegistryReport, RegistryState, ServiceSection

_COLUMNS = ("POD", "PHASE", "READY", "NODE", "ZONE", "REGISTRY", "SESSIONS")
NOT_COUNTED_NOTE = (
    "media-edge and session-router hold no leases in the registry: their live calls are not "
    "counted here (their voicemesh_sessions_active metric counts them)"
)


def registry_line(report: RegistryReport) -> str:
    if report.read:
        return f"registry {report.url}: {report.instances} instance(s)"
    if not report.url:
        return "registry not reached: no --redis-url or VOICEMESH_REDIS_URL given; showing pods only"
    return f"registry not reached: {report.error}; showing pods only"


def _cells(row: PodRow) -> tuple[str, ...]:
    pod = row.pod
    if pod is None:
        phase, ready, node = "(no pod)", "-", "-"
    else:
        phase, ready, node = pod.shown_phase, f"{pod.containers_ready}/{pod.containers}", pod.node or "-"
    state = row.state.value
    if row.state is RegistryState.DEAD and row.instance is not None and row.instance.draining:
        state = "dead, draining"
    if row.instance is None:
        sessions = "-"
    else:
        active = row.active
        sessions = f"{'-' if active is None else active}/{row.instance.info.capacity}"
    return (row.name, phase, ready, node, row.zone or "-", state, sessions)


def _header(section: ServiceSection) -> str:
    dep = section.deployment
    text = f"{section.service}: "
    if dep is None:
        text += "no Deployment"
    else:
        text += f"Deployment {dep.name}, {dep.ready}/{dep.desired} ready"
    if section.hpa is not None:
        h = section.hpa
        text += f"; HPA {h.name} keeps {h.min_replicas}-{h.max_replicas} replicas"
    return text


def format_status(status: ClusterStatus) -> list[str]:
    """The table `voicemesh cluster status` prints: a line for the release and the
    registry, then per service a header and its rows (columns aligned across services)."""
    lines = [
        f"release {status.release} in namespace {status.namespace}",
        registry_line(status.registry),
    ]
    if not status.sections:
        lines.append(f"no pods or Deployments of release {status.release} in namespace {status.namespace}")
        return lines
    table = [_cells(row) for section in status.sections for row in section.rows]
    widths = [max(len(c) for c in column) for column in zip(_COLUMNS, *table, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    for section in status.sections:
        lines.append("")
        lines.append(_header(section))
        if section.rows:
            lines.append(line(_COLUMNS))
            lines.extend(line(_cells(row)) for row in section.rows)
        else:
            lines.append("  no pods")
    if status.elsewhere:
        where = ", ".join(f"{n} in {region or '(no region)'}" for region, n in status.elsewhere.items())
        lines.append("")
        lines.append(f"registry instances of other regions, not shown: {where}")
    if any(
        row.instance is not None and row.active is None and row.service in SERVICES
        for section in status.sections
        for row in section.rows
    ):
        lines.append("")
        lines.append(f"note: {NOT_COUNTED_NOTE}")
    return lines


def _row_json(row: PodRow) -> dict[str, object]:
    pod = row.pod
    inst = row.instance
    return {
        "name": row.name,
        "pod": None
        if pod is None
        else {
            "phase": pod.shown_phase,
            "ready": pod.ready,
            "containers_ready": pod.containers_ready,
            "containers": pod.containers,
            "node": pod.node,
        },
        "zone": row.zone,
        "registry_state": row.state.value,
        "registry": None
        if inst is None
        else {
            "alive": inst.alive,
            "draining": inst.draining,
            "active": row.active,
            "capacity": inst.info.capacity,
            "region": inst.info.region,
            "zone": inst.info.zone,
            "address": inst.info.address,
        },
    }


def status_json(status: ClusterStatus) -> dict[str, object]:
    """The document `voicemesh cluster status --json` prints (the same facts as the table)."""
    reg = status.registry
    return {
        "namespace": status.namespace,
        "release": status.release,
        "registry": {
            "url": reg.url,
            "read": reg.read,
            "error": reg.error or None,
            "instances": reg.instances,
        },
        "services": [
            {
                "service": s.service,
                "deployment": None
                if s.deployment is None
                else {
                    "name": s.deployment.name,
                    "desired": s.deployment.desired,
                    "ready": s.deployment.ready,
                },
                "hpa": None
                if s.hpa is None
                else {
                    "name": s.hpa.name,
                    "min_replicas": s.hpa.min_replicas,
                    "max_replicas": s.hpa.max_replicas,
                },
                "pods": [_row_json(row) for row in s.rows],
            }
            for s in status.sections
        ],
        "other_regions": dict(status.elsewhere),
    }
