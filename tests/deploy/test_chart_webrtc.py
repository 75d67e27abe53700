"""WebRTC and the softphone page as the Helm chart renders them (mediaEdge.webrtc): the
edge's environment and the Secrets it reads (held against the edge's own settings), the
chart-made dev secret, the Ingress paths of the page, the NetworkPolicy egress to a TURN
server (evaluated by netpolicy.py), and the NOTES that hand out a call token."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicemesh.edge.settings import EdgeSettings
from voicemesh.edge.tokens import MIN_SECRET

from .conftest import (
    CI,
    FULLNAME,
    KUBE_VERSIONS,
    NAMESPACE,
    SERVICES,
    TOKEN_SET,
    Render,
    Renderer,
    container_of,
    dev_secrets,
    env_of,
    install_notes,
)
from .netpolicy import Peer, allowed_flows

pytestmark = pytest.mark.integration

WEBRTC_ENV = (
    "VOICEMESH_CALL_TOKEN_SECRET",
    "VOICEMESH_CALL_TOKEN_TTL_S",
    "VOICEMESH_WEBRTC_ICE_SERVERS",
    "VOICEMESH_WEBRTC_ICE_POLICY",
    "VOICEMESH_WEBRTC_TURN_SECRET",
    "VOICEMESH_WEBRTC_TURN_TTL_S",
    "VOICEMESH_AGENTS_DIR",
    "VOICEMESH_DEFAULT_AGENT",
)
# What ci/webrtc-relay-values.yaml names.
TURN_URLS = [
    "turn:turn.example.com:3478?transport=udp",
    "turn:turn.example.com:3478?transport=tcp",
    "turns:turn.example.com:5349?transport=tcp",
]
TURN_SET = (
    "mediaEdge.webrtc.iceServers[0].urls[0]=turn:turn.example.com:3478",
    "mediaEdge.webrtc.turn.existingSecret=voicemesh-turn",
)


@pytest.fixture(scope="module")
def relay(ci_renders: dict[tuple[str, str, str], Render]) -> Render:
    return ci_renders[("helm4", "webrtc-relay-values.yaml", KUBE_VERSIONS[-1])].ok()


def _edge(render: Render) -> dict[str, Any]:
    return render.get("Deployment", f"{FULLNAME}-media-edge")


def _edge_env(render: Render) -> dict[str, dict[str, Any]]:
    return env_of(container_of(_edge(render)))


# --- the edge's environment ---------------------------------------------------------------


def test_webrtc_is_on_by_default_and_refuses_calls_until_a_secret_is_named(defaults: Render) -> None:
    env = _edge_env(defaults)
    assert env["VOICEMESH_WEBRTC_ENABLED"]["value"] == "true"
    assert env["VOICEMESH_CALL_TOKEN_TTL_S"]["value"] == "300"
    assert env["VOICEMESH_WEBRTC_ICE_POLICY"]["value"] == "all"
    # no secret named: the edge runs without one, and says so to every WebRTC request
    assert "VOICEMESH_CALL_TOKEN_SECRET" not in env
    assert not [n for n in ("VOICEMESH_WEBRTC_ICE_SERVERS", "VOICEMESH_WEBRTC_TURN_SECRET") if n in env]
    # the edge image carries no agents: without agents.configMap the page lists none
    assert "VOICEMESH_AGENTS_DIR" not in env
    for key in SERVICES:
        if key != "media-edge":
            other = env_of(container_of(defaults.get("Deployment", f"{FULLNAME}-{key}")))
            assert not [n for n in other if "WEBRTC" in n or "CALL_TOKEN" in n], key


def test_webrtc_off_sets_nothing_but_the_switch(renderer: Renderer) -> None:
    render = renderer.template(
        values=[CI["webrtc-relay-values.yaml"]], sets=("mediaEdge.webrtc.enabled=false",)
    ).ok()
    env = _edge_env(render)
    assert env["VOICEMESH_WEBRTC_ENABLED"]["value"] == "false"
    assert [n for n in WEBRTC_ENV if n in env] == []
    mounts = {m["mountPath"] for m in container_of(_edge(render))["volumeMounts"]}
    assert "/app/agents" not in mounts
    # reasoning keeps its agents and default
    reasoning = env_of(container_of(render.get("Deployment", f"{FULLNAME}-reasoning")))
    assert reasoning["VOICEMESH_DEFAULT_AGENT"]["value"] == "clinic"


def test_relay_through_turn_reaches_the_edge_by_reference(relay: Render) -> None:
    env = _edge_env(relay)
    values = {name: e.get("value") for name, e in env.items()}
    assert json.loads(values["VOICEMESH_WEBRTC_ICE_SERVERS"]) == [{"urls": TURN_URLS}]
    assert values["VOICEMESH_WEBRTC_ICE_POLICY"] == "relay"
    assert values["VOICEMESH_WEBRTC_TURN_TTL_S"] == "7200"
    assert values["VOICEMESH_CALL_TOKEN_TTL_S"] == "120"
    # the secrets stay in their Secrets: the pod spec names only where they are
    assert env["VOICEMESH_WEBRTC_TURN_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "voicemesh-turn", "key": "static-auth-secret"}
    }
    assert env["VOICEMESH_CALL_TOKEN_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "voicemesh-call-tokens", "key": "call-token-secret"}
    }
    assert values["VOICEMESH_WEBRTC_TURN_SECRET"] is None and values["VOICEMESH_CALL_TOKEN_SECRET"] is None
    assert dev_secrets(relay) == []


def test_the_page_lists_the_agents_reasoning_serves(relay: Render) -> None:
    edge, reasoning = _edge(relay), relay.get("Deployment", f"{FULLNAME}-reasoning")
    for deployment in (edge, reasoning):
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (mount,) = [m for m in container_of(deployment)["volumeMounts"] if m["mountPath"] == "/app/agents"]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["configMap"] == {"name": "voicemesh-agents"}
        env = env_of(container_of(deployment))
        assert env["VOICEMESH_AGENTS_DIR"]["value"] == "/app/agents"
        assert env["VOICEMESH_DEFAULT_AGENT"]["value"] == "clinic"


@pytest.mark.parametrize("values", ["defaults", "dev-values.yaml", "webrtc-relay-values.yaml"])
def test_the_edge_accepts_the_environment_the_chart_renders(
    ci_renders: dict[tuple[str, str, str], Render], values: str
) -> None:
    """The edge's own settings, built from the rendered env: every VOICEMESH_* variable the
    chart sets is one the edge reads, in a form it takes. A secret comes from the Secret the
    chart makes, else a stand-in for the operator's."""
    render = ci_renders[("helm4", values, KUBE_VERSIONS[-1])].ok()
    env = _edge_env(render)
    made = {d["metadata"]["name"]: d["data"] for d in render.of_kind("Secret")}
    fields = set(EdgeSettings.model_fields)
    settings: dict[str, Any] = {}
    for name, entry in env.items():
        if not name.startswith("VOICEMESH_"):
            continue
        field = name.removeprefix("VOICEMESH_").lower()
        assert field in fields, f"{name} is no setting of the edge"
        if "value" in entry:
            settings[field] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            data = made.get(ref["name"])
            settings[field] = base64.b64decode(data[ref["key"]]).decode() if data else "s" * 48
        else:  # the pod's name, address and zone
            settings[field] = "10.0.0.9" if field == "advertise_host" else "pod"
    edge = EdgeSettings(**settings)
    assert edge.webrtc_enabled is True
    assert bool(edge.call_token_secret) is (values != "defaults")
    if values == "webrtc-relay-values.yaml":
        assert str(edge.webrtc_ice_policy) == "relay"
        assert edge.webrtc_turn_ttl_s == 7200


# --- the dev secret -----------------------------------------------------------------------


def test_dev_call_token_secret_follows_the_edge_tokens_pattern(renderer: Renderer, chart_dir: Path) -> None:
    dev = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    secret = dev.get("Secret", f"{FULLNAME}-call-tokens")
    assert secret["metadata"]["annotations"]["voicemesh.io/dev-secret"] == "true"
    devsecret = yaml.safe_load(CI["dev-values.yaml"].read_text())["mediaEdge"]["webrtc"]["callTokens"][
        "devSecret"
    ]
    assert base64.b64decode(secret["data"]["secret"]).decode() == devsecret
    assert _edge_env(dev)["VOICEMESH_CALL_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-call-tokens",
        "key": "secret",
    }
    # random when no fixed value is given, long enough for the edge; the schema asks as much
    # of a fixed one
    made = renderer.template(sets=(*TOKEN_SET, "mediaEdge.webrtc.callTokens.createDevSecret=true")).ok()
    (random_secret,) = dev_secrets(made)
    assert len(base64.b64decode(random_secret["data"]["secret"])) >= MIN_SECRET
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    calls = schema["properties"]["mediaEdge"]["properties"]["webrtc"]["properties"]["callTokens"]
    assert calls["properties"]["devSecret"]["pattern"] == f"^(.{{{MIN_SECRET},}})?$"
    # an existing Secret wins; WebRTC off needs none
    for sets in (
        ("mediaEdge.webrtc.callTokens.existingSecret=mine",),
        ("mediaEdge.webrtc.enabled=false",),
    ):
        render = renderer.template(
            sets=(*TOKEN_SET, "mediaEdge.webrtc.callTokens.createDevSecret=true", *sets)
        )
        assert dev_secrets(render.ok()) == []


def test_a_changed_dev_secret_restarts_the_edge(renderer: Renderer) -> None:
    def checksum(*sets: str) -> str | None:
        render = renderer.template(values=[CI["dev-values.yaml"]], sets=sets).ok()
        annotations = _edge(render)["spec"]["template"]["metadata"].get("annotations", {})
        return annotations.get("checksum/dev-secrets")

    base = checksum()
    assert base is not None
    assert checksum(f"mediaEdge.webrtc.callTokens.devSecret={'x' * 32}") not in (None, base)
    assert checksum(f"auth.devToken={'y' * 16}") not in (None, base)
    # only the edge reads these secrets
    render = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    stt = render.get("Deployment", f"{FULLNAME}-stt")["spec"]["template"]["metadata"]
    assert "checksum/dev-secrets" not in stt.get("annotations", {})


# --- the Ingress --------------------------------------------------------------------------


def _paths(render: Render) -> list[tuple[str, str]]:
    (ingress,) = render.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    for p in rule["http"]["paths"]:
        assert p["backend"]["service"] == {"name": f"{FULLNAME}-media-edge", "port": {"name": "http"}}
    return [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]


def test_the_ingress_routes_the_page_to_the_edge(relay: Render, renderer: Renderer) -> None:
    # /v1 carries /v1/whip, /v1/tokens and /v1/softphone; / the page and its files
    assert _paths(relay) == [("/v1", "Prefix"), ("/", "Prefix")]
    off = renderer.template(values=[CI["webrtc-relay-values.yaml"]], sets=("mediaEdge.webrtc.enabled=false",))
    assert _paths(off.ok()) == [("/v1", "Prefix")]
    # a host that routes everything already gets no second /
    everything = renderer.template(
        values=[CI["webrtc-relay-values.yaml"]],
        sets=(
            "mediaEdge.ingress.hosts[0].host=voice.example.com",
            "mediaEdge.ingress.hosts[0].paths[0].path=/",
        ),
    ).ok()
    assert _paths(everything) == [("/", "Prefix")]
    specific = renderer.template(
        values=[CI["webrtc-relay-values.yaml"]],
        sets=(
            "mediaEdge.ingress.hosts[0].host=voice.example.com",
            "mediaEdge.ingress.hosts[0].paths[0].path=/",
            "mediaEdge.ingress.hosts[0].paths[0].pathType=ImplementationSpecific",
        ),
    ).ok()
    assert _paths(specific) == [("/", "ImplementationSpecific")]


# --- NetworkPolicy egress to the TURN server ----------------------------------------------

TURN = Peer(
    "turn",
    None,
    ip="198.51.100.7",
    ports=((3478, "UDP"), (3478, "TCP"), (5349, "TCP"), (49160, "UDP"), (65535, "UDP")),
)
ELSEWHERE = Peer("elsewhere", None, ip="192.0.2.44", ports=((3478, "UDP"), (49160, "UDP")))


def _to_turn(render: Render) -> dict[str, set[tuple[int, str]]]:
    """Who reaches the TURN server (and another address) on which ports."""
    found: dict[str, set[tuple[int, str]]] = {}
    for src, dst, port, protocol in allowed_flows(render, (TURN, ELSEWHERE)):
        if dst in ("turn", "elsewhere"):
            found.setdefault(f"{src}->{dst}", set()).add((port, protocol))
    return found


def test_relay_opens_only_the_turn_servers_listening_ports(relay: Render) -> None:
    assert _to_turn(relay) == {"media-edge->turn": {(3478, "UDP"), (3478, "TCP"), (5349, "TCP")}}


def test_policy_all_also_opens_the_turn_relay_range(renderer: Renderer) -> None:
    render = renderer.template(
        values=[CI["webrtc-relay-values.yaml"]], sets=("mediaEdge.webrtc.icePolicy=all",)
    ).ok()
    assert _to_turn(render) == {
        "media-edge->turn": {(3478, "UDP"), (3478, "TCP"), (5349, "TCP"), (49160, "UDP"), (65535, "UDP")}
    }


def test_turn_egress_without_a_peer_is_any_address_on_the_turn_ports(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, *TURN_SET, "mediaEdge.webrtc.icePolicy=relay")).ok()
    assert _to_turn(render) == {
        "media-edge->turn": {(3478, "UDP"), (3478, "TCP"), (5349, "TCP")},
        "media-edge->elsewhere": {(3478, "UDP")},
    }
    off = renderer.template(sets=(*TOKEN_SET, *TURN_SET, "mediaEdge.webrtc.enabled=false")).ok()
    assert _to_turn(off) == {}


# --- NOTES: a call token and the page -----------------------------------------------------


def _notes(helm: Path, chart: Path, tmp_path: Path, values: Path, *sets: str) -> str:
    return install_notes(helm, chart, tmp_path, [values], sets)


@pytest.fixture
def token_issuer() -> Iterator[tuple[int, list[str]]]:
    """A stand-in for the edge's POST /v1/tokens on a free port: the Authorization headers
    it saw."""
    seen: list[str] = []

    class Issuer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            ok = self.path == "/v1/tokens"
            body = json.dumps({"token": "vm1.payload.signature", "expires_at": 1.0}).encode()
            self.send_response(201 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if ok else b"{}")

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Issuer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_notes_tell_how_to_get_a_call_token_and_open_the_page(
    helm_binaries: dict[str, Path],
    chart_dir: Path,
    tmp_path: Path,
    token_issuer: tuple[int, list[str]],
) -> None:
    port, seen = token_issuer
    notes = _notes(
        helm_binaries["helm4"],
        chart_dir,
        tmp_path,
        CI["webrtc-relay-values.yaml"],
        f"mediaEdge.http.port={port}",
    )
    assert (
        'curl -s -X POST -H "Authorization: Bearer $VOICEMESH_EDGE_TOKEN" http://127.0.0.1:8080/v1/tokens'
        in notes
    )
    assert "http://127.0.0.1:8080/?token=<token>" in notes
    assert "https://voice.example.com/?token=<token>" in notes
    assert "no TURN server" not in notes
    # The `kubectl exec` line's own command, run here as the edge pod would run it.
    (line,) = [ln.strip() for ln in notes.splitlines() if "kubectl" in ln and " exec " in ln]
    prefix = f"kubectl -n {NAMESPACE} exec deploy/{FULLNAME}-media-edge -- "
    assert line.startswith(prefix)
    command = line.removeprefix(prefix).replace("python -c", f"{sys.executable} -c", 1)
    proc = subprocess.run(
        ["sh", "-c", command],
        env={"VOICEMESH_EDGE_TOKEN": "t" * 24, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "vm1.payload.signature"
    assert seen == [f"Bearer {'t' * 24}"]


def test_notes_say_when_webrtc_cannot_call(
    helm_binaries: dict[str, Path], chart_dir: Path, tmp_path: Path
) -> None:
    notes = _notes(helm_binaries["helm4"], chart_dir, tmp_path, CI["default-values.yaml"])
    assert "has no call-token secret (mediaEdge.webrtc.callTokens.existingSecret)" in notes
    assert "/v1/tokens" not in notes
    dev = _notes(helm_binaries["helm4"], chart_dir, tmp_path, CI["dev-values.yaml"])
    assert "no TURN server is set" in dev
    assert f"{FULLNAME}-call-tokens" in dev  # the dev Secrets are named as such
