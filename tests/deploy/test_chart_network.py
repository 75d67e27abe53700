"""How traffic reaches the mesh and moves inside it, as the Helm chart renders it: the
Services, the Ingress, SIP on a load balancer or the node network and who may call over it,
and the NetworkPolicy flows (evaluated by netpolicy.py over the release's pods and a few
peers around it)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import (
    FULLNAME,
    GRPC_PORTS,
    HEALTH_PORTS,
    KUBE_VERSIONS,
    NAMESPACE,
    SERVICES,
    TOKEN_SET,
    Render,
    Renderer,
    container_of,
    env_of,
    selector_of,
)
from .netpolicy import Flow, Peer, allowed_flows, side_allows

pytestmark = pytest.mark.integration


# --- Services and Ingress -----------------------------------------------------------------


def test_services_expose_named_ports(defaults: Render) -> None:
    for key in SERVICES:
        svc = defaults.get("Service", f"{FULLNAME}-{key}")
        assert svc["spec"]["type"] == "ClusterIP"
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        expected = {"grpc": (GRPC_PORTS[key], "grpc"), "metrics": (9464, "metrics")}
        if key == "media-edge":
            expected["http"] = (8080, "http")
        assert ports == expected
    assert not [d for d in defaults.of_kind("Service") if d["spec"]["type"] != "ClusterIP"]
    assert defaults.of_kind("Ingress") == []


def test_edge_behind_a_load_balancer_and_sip_service(ci_renders: dict[tuple[str, str, str], Render]) -> None:
    render = ci_renders[("helm4", "sip-loadbalancer-values.yaml", KUBE_VERSIONS[-1])].ok()
    http = render.get("Service", f"{FULLNAME}-media-edge-http")
    assert http["spec"]["type"] == "LoadBalancer" and http["spec"]["externalTrafficPolicy"] == "Local"
    assert [p["name"] for p in http["spec"]["ports"]] == ["http"]  # never gRPC or metrics
    sip = render.get("Service", f"{FULLNAME}-media-edge-sip")
    assert sip["spec"]["type"] == "LoadBalancer" and sip["spec"]["externalTrafficPolicy"] == "Local"
    assert sip["spec"]["selector"] == selector_of("media-edge")
    ports = {(p["port"], p["protocol"]) for p in sip["spec"]["ports"]}
    assert {(5060, "UDP"), (5060, "TCP")} <= ports
    assert {p for p, proto in ports if proto == "UDP" and p != 5060} == set(range(20000, 20050))
    edge = env_of(container_of(render.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_SIP_PUBLIC_HOST"]["value"] == "203.0.113.10"
    assert edge["VOICEMESH_SIP_HOST"]["value"] == "0.0.0.0"  # the pod's interfaces, not its loopback


def test_sip_host_network_mode(ci_renders: dict[tuple[str, str, str], Render]) -> None:
    render = ci_renders[("helm4", "sip-hostnetwork-values.yaml", KUBE_VERSIONS[-1])].ok()
    edge = render.get("Deployment", f"{FULLNAME}-media-edge")
    spec = edge["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert edge["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    host_ports = {(p["hostPort"], p["protocol"]) for p in container_of(edge)["ports"] if "hostPort" in p}
    assert host_ports == {(5060, "UDP"), (5060, "TCP")}
    mounts = {m["mountPath"] for m in container_of(edge)["volumeMounts"]}
    assert {"/etc/voicemesh/sip-tls", "/etc/voicemesh/srtp"} <= mounts
    env = env_of(container_of(edge))
    # no public host given: the node's own address goes into SDP and Contact
    assert env["VOICEMESH_SIP_PUBLIC_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert (env["VOICEMESH_SIP_TLS_CERT"]["value"], env["VOICEMESH_SIP_TLS_KEY"]["value"]) == (
        "/etc/voicemesh/sip-tls/tls.crt",
        "/etc/voicemesh/sip-tls/tls.key",
    )
    assert f"{FULLNAME}-media-edge-sip" not in render.names("Service")
    # Other pods stay off the node network.
    assert not [
        d
        for d in render.of_kind("Deployment")
        if d is not edge and d["spec"]["template"]["spec"].get("hostNetwork")
    ]


SIP_ACCESS_ENV = ("VOICEMESH_SIP_ALLOW", "VOICEMESH_SIP_USERS", "VOICEMESH_SIP_DIAL_AUTH")
SIP_ACCESS_SET = (
    "mediaEdge.sip.allow={10.0.0.0/8,192.0.2.0/24}",
    "mediaEdge.sip.users.existingSecret=voicemesh-sip-users",
    "mediaEdge.sip.dialAuth.existingSecret=voicemesh-sip-trunk",
    "mediaEdge.sip.dialAuth.key=trunk",
    "mediaEdge.sip.realm=sip.example.com",
)


def _edge_env(render: Render) -> dict[str, dict[str, Any]]:
    return env_of(container_of(render.get("Deployment", f"{FULLNAME}-media-edge")))


def test_sip_access_values_reach_the_edge(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "mediaEdge.sip.enabled=true", *SIP_ACCESS_SET)).ok()
    env = _edge_env(render)
    assert env["VOICEMESH_SIP_ALLOW"] == {"name": "VOICEMESH_SIP_ALLOW", "value": "10.0.0.0/8,192.0.2.0/24"}
    # the passwords stay in their Secrets: the pod spec names only where they are
    assert env["VOICEMESH_SIP_USERS"]["valueFrom"] == {
        "secretKeyRef": {"name": "voicemesh-sip-users", "key": "sip-users"}
    }
    assert env["VOICEMESH_SIP_DIAL_AUTH"]["valueFrom"] == {
        "secretKeyRef": {"name": "voicemesh-sip-trunk", "key": "trunk"}
    }
    assert "value" not in env["VOICEMESH_SIP_USERS"] and "value" not in env["VOICEMESH_SIP_DIAL_AUTH"]
    assert env["VOICEMESH_SIP_REALM"]["value"] == "sip.example.com"
    # only the edge learns who may call
    for key in SERVICES:
        if key != "media-edge":
            other = env_of(container_of(render.get("Deployment", f"{FULLNAME}-{key}")))
            assert not [name for name in other if name.startswith("VOICEMESH_SIP_")]


def test_sip_access_unset_leaves_the_edge_defaults(renderer: Renderer) -> None:
    env = _edge_env(renderer.template(sets=(*TOKEN_SET, "mediaEdge.sip.enabled=true")).ok())
    # no VOICEMESH_SIP_ALLOW: the edge's own default (loopback only), not an empty list
    assert [name for name in SIP_ACCESS_ENV if name in env] == []
    assert env["VOICEMESH_SIP_REALM"]["value"] == "voicemesh"
    # SIP off: none of it, whatever the access values say
    env = _edge_env(renderer.template(sets=(*TOKEN_SET, *SIP_ACCESS_SET)).ok())
    assert not [name for name in env if name.startswith("VOICEMESH_SIP_")]


def test_ingress_routes_to_the_edge_http_port(production: Render) -> None:
    (ingress,) = production.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "voice.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULLNAME}-media-edge", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "voice-example-com-tls"


# --- NetworkPolicy flows ------------------------------------------------------------------


def _contract_flows(services: tuple[str, ...], callers: tuple[str, ...]) -> set[Flow]:
    flows = {("media-edge", key, GRPC_PORTS[key], "TCP") for key in services if key != "media-edge"}
    for key in services:
        flows |= {(key, "valkey", 6379, "TCP"), (key, "nats", 4222, "TCP"), ("prometheus", key, 9464, "TCP")}
    for pod in (*services, "test"):
        flows |= {(pod, "kube-dns", 53, "UDP"), (pod, "kube-dns", 53, "TCP")}
    flows.add(("prometheus", "nats", 8222, "TCP"))
    flows |= {(caller, "media-edge", 8080, "TCP") for caller in (*callers, "test")}
    return flows


def test_network_policies_allow_exactly_the_contract_flows(defaults: Render) -> None:
    allowed = allowed_flows(defaults)
    # Callers come from anywhere by default: any address or pod that is not itself locked down.
    expected = _contract_flows(SERVICES, callers=("internet", "neighbour", "prometheus", "kube-dns"))
    assert allowed - expected == set(), "flows beyond the contract"
    assert expected - allowed == set(), "contract flows blocked"


KUBELET = Peer("kubelet", None, ip="172.18.0.2", node=True)


def test_only_the_kubelet_reaches_the_plaintext_health_ports(defaults: Render) -> None:
    """The health port answers without mTLS: no pod and no address may reach it, only the
    node's kubelet, whose probes NetworkPolicies never block."""
    allowed = allowed_flows(defaults, (KUBELET,))
    into_health = {(src, dst) for src, dst, port, _ in allowed if port == HEALTH_PORTS.get(dst)}
    assert into_health == {("kubelet", key) for key in SERVICES}
    # and the node aside, the flows are still exactly the contract's
    assert {f for f in allowed if f[0] != "kubelet"} == allowed_flows(defaults)


@pytest.mark.parametrize("values", ["sip-hostnetwork-values.yaml", "production-values.yaml"])
def test_no_health_port_opens_in_other_shapes(
    ci_renders: dict[tuple[str, str, str], Render], values: str
) -> None:
    render = ci_renders[("helm4", values, KUBE_VERSIONS[-1])].ok()
    node_ip = Peer("node-network", None, ip="10.0.0.7")  # a node address, as a peer (not the pod's own node)
    opened = {
        (src, dst) for src, dst, port, _ in allowed_flows(render, (node_ip,)) if port == HEALTH_PORTS.get(dst)
    }
    assert opened == set()


def test_stt_accepts_only_the_edge_and_prometheus(defaults: Render) -> None:
    into_stt = {(src, port) for src, dst, port, _ in allowed_flows(defaults) if dst == "stt"}
    assert into_stt == {("media-edge", 50052), ("prometheus", 9464)}


def test_network_policies_follow_the_enabled_services(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false")).ok()
    expected = _contract_flows(
        tuple(k for k in SERVICES if k != "tts"), callers=("internet", "neighbour", "prometheus", "kube-dns")
    )
    assert allowed_flows(render) == expected


def test_production_network_policies(production: Render) -> None:
    nginx = Peer("ingress-nginx", "ingress-nginx", (("app", "nginx"),), ports=((80, "TCP"),))
    store = Peer("external-store", None, ip="10.20.3.4", ports=((6380, "TCP"), (4222, "TCP")))
    elsewhere = Peer("elsewhere-store", None, ip="192.0.2.9", ports=((6380, "TCP"),))
    allowed = allowed_flows(production, (nginx, store, elsewhere))
    expected = _contract_flows(SERVICES, callers=("ingress-nginx",))
    expected -= {
        f for f in expected if f[1] in ("valkey", "nats") or (f[0] == "prometheus" and f[1] == "nats")
    }
    for key in SERVICES:
        expected |= {(key, "external-store", 6380, "TCP"), (key, "external-store", 4222, "TCP")}
    # reasoning's extraEgress: the LLM API on 443, anywhere.
    expected.add(("reasoning", "internet", 443, "TCP"))
    assert allowed == expected


def test_sip_opens_udp_to_the_edge_only(ci_renders: dict[tuple[str, str, str], Render]) -> None:
    render = ci_renders[("helm4", "sip-loadbalancer-values.yaml", KUBE_VERSIONS[-1])].ok()
    carrier = Peer("carrier", None, ip="198.51.100.20")
    stranger = Peer("stranger", None, ip="203.0.113.50")
    edge_ports = ((5060, "UDP"), (5060, "TCP"), (20000, "UDP"), (20049, "UDP"), (20050, "UDP"))
    policies = render.of_kind("NetworkPolicy")
    labels = tuple(
        sorted(
            render.get("Deployment", f"{FULLNAME}-media-edge")["spec"]["template"]["metadata"][
                "labels"
            ].items()
        )
    )
    edge = Peer("media-edge", NAMESPACE, labels)
    let_in = {
        (port, proto)
        for port, proto in edge_ports
        if side_allows(policies, edge, carrier, port, proto, "Ingress")
    }
    assert let_in == set(edge_ports[:4])
    assert not any(
        side_allows(policies, edge, stranger, port, proto, "Ingress") for port, proto in edge_ports
    )
    # RTP replies go to whatever port the far end chose.
    assert side_allows(policies, edge, carrier, 40000, "UDP", "Egress")
    stt_labels = tuple(
        sorted(render.get("Deployment", f"{FULLNAME}-stt")["spec"]["template"]["metadata"]["labels"].items())
    )
    assert not side_allows(policies, Peer("stt", NAMESPACE, stt_labels), carrier, 40000, "UDP", "Egress")
