"""Evaluate rendered NetworkPolicies: which flows they let through.

A small model of the NetworkPolicy semantics the chart relies on (pod and namespace
selectors, `ipBlock` with `except`, port ranges, the Ingress and Egress sides), applied to a
universe of peers: every pod the release renders (Deployments, StatefulSets, the helm test
Pod) plus a few stand-ins around it (Prometheus, kube-dns, a neighbouring pod, an address on
the internet) and whatever peers a test adds. A flow (source, destination, port, protocol)
is allowed when the destination's ingress side and the source's egress side both let it
through; a side that no policy selects lets everything through, as in Kubernetes. So is
traffic from a pod's own node (the kubelet's probes), which NetworkPolicies never block: a
peer with `node=True` stands for it.

Only numeric ports are understood: a named port in a policy fails the check instead of
being guessed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .conftest import NAMESPACE, Render, component_of

# (source, destination, port, protocol), by peer name.
Flow = tuple[str, str, int, str]
Direction = Literal["Ingress", "Egress"]


@dataclass(frozen=True)
class Peer:
    """A pod (namespace and labels) or an address outside the cluster, and the ports it
    listens on."""

    name: str
    namespace: str | None  # None: an address outside the cluster
    labels: tuple[tuple[str, str], ...] = ()
    ip: str = "10.1.2.3"
    ports: tuple[tuple[int, str], ...] = ()
    # The pods' own node (the kubelet): its traffic to them is always allowed.
    node: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


# Who is around the release in every evaluation.
BYSTANDERS: tuple[Peer, ...] = (
    Peer("prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),), ports=((9090, "TCP"),)),
    Peer("kube-dns", "kube-system", (("k8s-app", "kube-dns"),), ports=((53, "UDP"), (53, "TCP"))),
    Peer("neighbour", NAMESPACE, (("app", "other"),), ports=((80, "TCP"),)),
    Peer("internet", None, ip="203.0.113.7", ports=((443, "TCP"),)),
)


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (`matchLabels` and `matchExpressions`) selects `labels`."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(rule_peer: Mapping[str, Any], who: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        addr = ipaddress.ip_address(who.ip)
        inside = addr in ipaddress.ip_network(block["cidr"])
        return inside and not any(addr in ipaddress.ip_network(c) for c in block.get("except", []))
    if who.namespace is None:
        return False
    ns_selector = rule_peer.get("namespaceSelector")
    if ns_selector is None:
        if who.namespace != policy_namespace:
            return False
    elif not matches(ns_selector, {"kubernetes.io/metadata.name": who.namespace}):
        return False
    return matches(rule_peer.get("podSelector") or {}, who.label_map)


def _port_matches(rule_ports: Sequence[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        assert isinstance(p["port"], int), f"named port in a policy: {p}"
        if p["port"] <= port <= p.get("endPort", p["port"]):
            return True
    return False


def side_allows(
    policies: Sequence[Mapping[str, Any]],
    subject: Peer,
    other: Peer,
    port: int,
    protocol: str,
    direction: Direction,
) -> bool:
    """Whether `subject`'s side of a flow lets it through: traffic from `other` into
    `subject` (Ingress) or from `subject` to `other` (Egress), on `port`/`protocol`."""
    if subject.namespace != NAMESPACE:
        return True  # not a pod these policies can select
    if direction == "Ingress" and other.node:
        return True  # from the pod's own node: always allowed
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], subject.label_map)
    ]
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(p, other, policy["metadata"]["namespace"]) for p in peers):
                continue
            if _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def release_peers(render: Render) -> list[Peer]:
    """The rendered pods: one per Deployment and StatefulSet (named by component, with the
    first container's ports) and the helm test Pod (named "test", listening on nothing)."""
    release: list[Peer] = []
    for doc in [*render.of_kind("Deployment"), *render.of_kind("StatefulSet")]:
        pod = doc["spec"]["template"]
        ports = tuple(
            (p["containerPort"], p.get("protocol", "TCP")) for p in pod["spec"]["containers"][0]["ports"]
        )
        release.append(
            Peer(
                component_of(doc) or "",
                NAMESPACE,
                tuple(sorted(pod["metadata"]["labels"].items())),
                ports=ports,
            )
        )
    for pod in render.of_kind("Pod"):
        release.append(Peer("test", NAMESPACE, tuple(sorted(pod["metadata"]["labels"].items()))))
    return release


def allowed_flows(render: Render, extra_peers: tuple[Peer, ...] = ()) -> set[Flow]:
    """Every flow the rendered policies allow to or from a pod of the release, between the
    release's pods, the BYSTANDERS and `extra_peers` (flows between two outsiders are not
    the chart's business)."""
    policies = render.of_kind("NetworkPolicy")
    release = release_peers(render)
    others = (*BYSTANDERS, *extra_peers)
    flows: set[Flow] = set()
    for src in (*release, *others):
        for dst in (*release, *others):
            if src is dst or (src not in release and dst not in release):
                continue
            for port, protocol in dst.ports:
                if side_allows(policies, dst, src, port, protocol, "Ingress") and side_allows(
                    policies, src, dst, port, protocol, "Egress"
                ):
                    flows.add((src.name, dst.name, port, protocol))
    return flows
