"""The Helm chart (deploy/helm/voicemesh) as a package, checked with the real helm v3 and v4.

Lint, render with each ci/*-values.yaml at two Kubernetes versions, validate every object
against the Kubernetes schemas (kubernetes-validate, strict) and the prometheus-operator
CRD schemas (node); then values.yaml and its schema, the failures that name the value to
fix, and what the install hands the operator: the helm test pod, NOTES and the guide.

What the rendered objects do is checked beside this module: the workloads (names, probes,
drain, security, env, autoscaling) in test_chart_workloads.py, Services, Ingress and the
NetworkPolicy flows in test_chart_network.py, monitoring in test_chart_monitoring.py, WebRTC
and the softphone page (env, secrets, Ingress, TURN egress, NOTES) in test_chart_webrtc.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from .conftest import (
    CI,
    FULLNAME,
    GRPC_PORTS,
    HELMS,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SERVICES,
    TOKEN_SET,
    Render,
    Renderer,
    component_of,
    container_of,
    env_of,
    install_notes,
    without_mesh_certificates,
)

pytestmark = pytest.mark.integration

CRD_GROUP = "monitoring.coreos.com/v1"


# --- helm lint and the schemas ------------------------------------------------------------


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("values", ["defaults", *CI])
def test_helm_lint_strict(helm_binaries: dict[str, Path], chart_dir: Path, helm: str, values: str) -> None:
    args = [str(helm_binaries[helm]), "lint", "--strict", str(chart_dir)]
    args += ["--set", TOKEN_SET[0]] if values == "defaults" else ["-f", str(CI[values])]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # helm lint reports a template's `fail` as mere information: treat it as the error it is.
    assert not re.search(r"\[(WARNING|ERROR)\]|Fail:|funcMap fail", out), out


def test_every_ci_values_file_renders(ci_renders: dict[tuple[str, str, str], Render]) -> None:
    assert {"dev-values.yaml", "production-values.yaml", "sip-hostnetwork-values.yaml"} <= set(CI)
    for key, render in ci_renders.items():
        render.ok()
        kinds = {d["kind"] for d in render.docs}
        assert {"Deployment", "Service", "NetworkPolicy"} <= kinds, key


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_objects_match_kubernetes_schemas(ci_renders: dict[tuple[str, str, str], Render], kube: str) -> None:
    """Strict (no unknown field) validation of every object; an object without a schema
    for this Kubernetes version (a removed API) fails, CRD kinds excepted. An object
    rendered the same way by several runs is validated once."""
    where: dict[str, list[str]] = {}
    for (helm, values, version), render in ci_renders.items():
        if version != kube:
            continue
        for doc in render.ok().docs:
            if doc["apiVersion"] != CRD_GROUP:
                key = json.dumps(doc, sort_keys=True)
                where.setdefault(key, []).append(f"{helm} {values} {doc['kind']}/{doc['metadata']['name']}")
    problems: list[str] = []
    for key, places in where.items():
        try:
            kubernetes_validate.validate(json.loads(key), kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{places[0]}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except SchemaNotFoundError as exc:
            problems.append(f"{places[0]}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert len(where) > 60


def test_monitoring_objects_match_crd_schemas(
    ci_renders: dict[tuple[str, str, str], Render], node_binary: str, node_modules: Path, repo_root: Path
) -> None:
    unique: dict[str, dict[str, Any]] = {}
    for render in ci_renders.values():
        for doc in render.ok().docs:
            if doc["apiVersion"] == CRD_GROUP:
                unique[json.dumps(doc, sort_keys=True)] = doc
    docs = list(unique.values())
    assert {d["kind"] for d in docs} == {"ServiceMonitor", "PrometheusRule"}
    results = _validate_crds(node_binary, node_modules, repo_root, docs)
    assert len(results) == len(docs)
    assert all(r["ok"] for r in results), results


def test_crd_validator_rejects_a_bad_object(node_binary: str, node_modules: Path, repo_root: Path) -> None:
    bad = {
        "apiVersion": CRD_GROUP,
        "kind": "ServiceMonitor",
        "metadata": {"name": "bad"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "every minute"}]},
    }
    (result,) = _validate_crds(node_binary, node_modules, repo_root, [bad], expect_ok=False)
    assert not result["ok"] and "interval" in result["error"]


def _validate_crds(
    node: str, node_modules: Path, repo_root: Path, docs: list[dict[str, Any]], expect_ok: bool = True
) -> list[dict[str, Any]]:
    script = repo_root / "tests" / "deploy" / "validate_crds.mjs"
    proc = subprocess.run(
        [node, str(script), str(node_modules)],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == (0 if expect_ok else 1), proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_helm3_and_helm4_render_the_same_objects(ci_renders: dict[tuple[str, str, str], Render]) -> None:
    for (helm, values, kube), render in ci_renders.items():
        if helm == "helm3":
            v3, v4 = render.ok().docs, ci_renders[("helm4", values, kube)].ok().docs
            assert without_mesh_certificates(v3) == without_mesh_certificates(v4), (values, kube)


# --- values.yaml and values.schema.json ---------------------------------------------------

_KEY_LINE = re.compile(r"""^(\s*)(?:-\s+)?("[^"]+"|'[^']+'|[A-Za-z0-9_.\-/]+):(\s|$)""")


def _uncommented_keys(text: str) -> list[str]:
    """Key lines of a YAML file whose line above is not a comment (block scalars skipped)."""
    missing: list[str] = []
    previous_is_comment = False
    block_indent: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if not stripped:
            previous_is_comment = False
            continue
        if stripped.startswith("#"):
            previous_is_comment = True
            continue
        if _KEY_LINE.match(line):
            if not previous_is_comment:
                missing.append(f"line {number}: {stripped}")
            if re.search(r":\s*[|>][-+]?\s*$", line):
                block_indent = indent
        previous_is_comment = False
    return missing


def test_the_comment_check_finds_an_uncommented_key() -> None:
    sample = "# a\na: 1\nb:\n  # c\n  c: |\n    d: not a key\n  e: 2\n"
    assert _uncommented_keys(sample) == ["line 3: b:", "line 7: e: 2"]


def test_every_value_has_a_comment(chart_dir: Path) -> None:
    text = (chart_dir / "values.yaml").read_text()
    assert _uncommented_keys(text) == []
    assert sum(1 for line in text.splitlines() if _KEY_LINE.match(line)) > 300


def test_schema_is_closed_at_every_level(chart_dir: Path) -> None:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    passthrough = schema["definitions"]["k8sObject"]
    open_nodes: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and node is not passthrough:
                closed = node.get("additionalProperties") is False and "properties" in node
                typed_map = isinstance(node.get("additionalProperties"), dict) and "properties" not in node
                if not (closed or typed_map):
                    open_nodes.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "#")
    assert open_nodes == []
    assert schema["properties"]["services"]["additionalProperties"] is False
    assert set(schema["properties"]["services"]["properties"]) == set(SERVICES)


def test_services_take_the_same_settings(chart_dir: Path) -> None:
    services = yaml.safe_load((chart_dir / "values.yaml").read_text())["services"]
    assert set(services) == set(SERVICES)
    shapes = {key: _shape(value) for key, value in services.items()}
    assert len({json.dumps(s, sort_keys=True) for s in shapes.values()}) == 1, shapes
    assert {k: v["grpcPort"] for k, v in services.items()} == GRPC_PORTS


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("selector", "behavior")}
    return None


def test_one_template_per_kind_renders_every_service(chart_dir: Path) -> None:
    templates = [
        p.relative_to(chart_dir / "templates").as_posix() for p in (chart_dir / "templates").rglob("*")
    ]
    assert not [
        t for t in templates if any(key in t for key in ("edge", "stt", "tts", "reasoning", "router"))
    ]
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"):
        assert "range $key, $svc := .Values.services" in (chart_dir / "templates" / name).read_text()


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--set", "services.stt.bogus=1", "bogus"),
        ("--set", "bogusTopLevel=1", "bogusTopLevel"),
        ("--set-string", "services.stt.replicas=two", "replicas"),
        ("--set", "mediaEdge.sip.mode=udp", "mode"),
        # a list of networks, not one comma-separated string
        ("--set-string", "mediaEdge.sip.allow=10.0.0.0/8", "allow"),
        ("--set", "mediaEdge.sip.allow={10.0.0.0/8,carrier.example.com}", "allow"),
        # the password comes from a Secret, never inline
        ("--set", "mediaEdge.sip.users=alice:secret", "users"),
        ("--set", "mediaEdge.sip.dialAuth.password=secret", "password"),
        ("--set", 'mediaEdge.sip.realm=say "hi"', "realm"),  # it goes into realm="..."
        ("--set", "mediaEdge.webrtc.icePolicy=direct", "icePolicy"),  # "all" or "relay"
        ("--set", "mediaEdge.webrtc.iceServers[0].urls=https://turn.example.com", "urls"),
        # a TURN password comes from a Secret (the edge mints it), never inline
        ("--set", "mediaEdge.webrtc.iceServers[0].credential=secret", "credential"),
        ("--set", "mediaEdge.webrtc.callTokens.devSecret=too-short", "devSecret"),  # the edge wants 32+
        ("--set", "mediaEdge.webrtc.turn.ttl=30", "ttl"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_types(
    renderer: Renderer, helm: str, flag: str, value: str, message: str
) -> None:
    sets, strings = ((value,), ()) if flag == "--set" else ((), (value,))
    render = renderer.template(helm, sets=(*TOKEN_SET, *sets), set_strings=strings)
    assert render.returncode != 0
    assert message in render.stderr


# --- failures that name the value to fix --------------------------------------------------


@pytest.mark.parametrize("helm", HELMS)
def test_without_an_edge_token_rendering_fails_naming_the_value(renderer: Renderer, helm: str) -> None:
    render = renderer.template(helm, sets=())
    assert render.returncode != 0
    assert "auth.edgeToken.existingSecret is required" in render.stderr
    assert "auth.createDevSecret" in render.stderr
    # Without the edge there is no token to ask for.
    renderer.template(helm, sets=("services.media-edge.enabled=false",)).ok()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("valkey.enabled=false",), "no Redis is configured: set valkey.enabled=true"),
        (("nats.enabled=false",), "no NATS is configured: set nats.enabled=true"),
        (("externalRedis.url=redis://r:6379/0",), "valkey.enabled=true and externalRedis are both set"),
        (("services.stt.autoscaling.enabled=true", "services.stt.resources.requests=null"), "requests.cpu"),
        (("services.stt.pdb.maxUnavailable=null",), "services.stt.pdb: set minAvailable or maxUnavailable"),
        (
            (
                "services.stt.autoscaling.enabled=true",
                "services.stt.autoscaling.minReplicas=9",
                "services.stt.autoscaling.maxReplicas=3",
            ),
            "services.stt.autoscaling: minReplicas (9) is above maxReplicas (3)",
        ),
        (("mediaEdge.sip.enabled=true", "mediaEdge.sip.rtp.portMax=12000"), "keep the range to 1000 ports"),
        (("mediaEdge.sip.enabled=true", "mediaEdge.sip.mode=hostNetwork"), "networkPolicy.nodeCidrs"),
        (("mediaEdge.webrtc.icePolicy=relay",), "mediaEdge.webrtc.icePolicy=relay needs a TURN server"),
        (
            ("mediaEdge.webrtc.iceServers[0].urls=turn:turn.example.com:3478",),
            "mediaEdge.webrtc.turn.existingSecret is empty",
        ),
        (
            (
                "mediaEdge.webrtc.iceServers[0].urls=stun:stun.example.com",
                "mediaEdge.webrtc.turn.existingSecret=t",
            ),
            "names no turn: or turns: URL",
        ),
        (
            (
                "mediaEdge.webrtc.turn.egress.relayPorts.min=60000",
                "mediaEdge.webrtc.turn.egress.relayPorts.max=50000",
            ),
            "relayPorts: max (50000) is below min (60000)",
        ),
    ],
)
def test_misconfiguration_fails_with_a_clear_message(
    renderer: Renderer, sets: tuple[str, ...], message: str
) -> None:
    render = renderer.template(sets=(*TOKEN_SET, *sets))
    assert render.returncode != 0
    assert message in render.stderr, render.stderr


def test_external_stores_replace_the_built_in_ones(renderer: Renderer) -> None:
    render = renderer.template(
        sets=(
            *TOKEN_SET,
            "valkey.enabled=false",
            "externalRedis.url=rediss://cache.example:6380/1",
            "nats.enabled=false",
            "externalNats.url=nats://bus.example:4333",
        ),
    ).ok()
    assert not [d for d in render.docs if component_of(d) in ("valkey", "nats")]
    for key in SERVICES:
        env = env_of(container_of(render.get("Deployment", f"{FULLNAME}-{key}")))
        assert env["VOICEMESH_REDIS_URL"]["value"] == "rediss://cache.example:6380/1"
        assert env["VOICEMESH_NATS_URL"]["value"] == "nats://bus.example:4333"
        egress_ports = {
            p["port"]
            for rule in render.get("NetworkPolicy", f"{FULLNAME}-{key}")["spec"]["egress"]
            for p in rule.get("ports", [])
        }
        assert {6380, 4333} <= egress_ports


# --- helm test and NOTES ------------------------------------------------------------------


def test_helm_test_pod_places_a_call(defaults: Render) -> None:
    pod = defaults.get("Pod", f"{FULLNAME}-test-call")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "voicemesh/cli:0.1.0"
    env = env_of(container)
    assert env["EDGE_URL"]["value"] == f"ws://{FULLNAME}-media-edge:8080/v1/call"
    assert env["CALLER_WAV"]["value"] == "/app/fixtures/caller_party.wav"
    assert env["VOICEMESH_EDGE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicemesh-edge-token",
        "key": "token",
    }


@pytest.mark.parametrize(
    ("call_json", "call_exit", "passes"),
    [
        ({"transcript": "a party of four", "reply_text": "For how many people?", "errors": []}, 0, True),
        ({"transcript": "", "reply_text": "Sorry?", "errors": []}, 0, False),
        ({"transcript": "a party of four", "reply_text": " ", "errors": []}, 0, False),
        ({"transcript": "x", "reply_text": "y"}, 1, False),
    ],
)
def test_helm_test_script_judges_the_call(
    defaults: Render, tmp_path: Path, call_json: dict[str, Any], call_exit: int, passes: bool
) -> None:
    """The pod's own shell script, run here with a stand-in `voicemesh` that prints a reply."""
    (container,) = defaults.get("Pod", f"{FULLNAME}-test-call")["spec"]["containers"]
    assert container["command"] == ["sh", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    fake = bin_dir / "voicemesh"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat {tmp_path}/reply.json\nexit {call_exit}\n')
    fake.chmod(0o755)
    (tmp_path / "reply.json").write_text(json.dumps(call_json))
    env = {k: v["value"] for k, v in env_of(container).items() if "value" in v}
    env |= {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "VOICEMESH_EDGE_TOKEN": "t" * 24,
    }
    proc = subprocess.run(
        ["sh", "-c", container["args"][0]], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert (proc.returncode == 0) is passes, proc.stdout + proc.stderr
    args = (tmp_path / "args").read_text().split()
    assert args == [
        "call",
        "--url",
        f"ws://{FULLNAME}-media-edge:8080/v1/call",
        "--json",
        "/app/fixtures/caller_party.wav",
    ]


def test_notes_tell_how_to_place_a_first_call(
    helm_binaries: dict[str, Path], chart_dir: Path, tmp_path: Path
) -> None:
    notes = install_notes(helm_binaries["helm4"], chart_dir, tmp_path, sets=TOKEN_SET)
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME}-media-edge 8080:8080" in notes
    assert "get secret voicemesh-edge-token -o jsonpath='{.data.token}' | base64 -d" in notes
    assert 'voicemesh call --url ws://127.0.0.1:8080/v1/call --token "$VOICEMESH_EDGE_TOKEN"' in notes
    assert f"helm test {RELEASE}" in notes
    assert "grafana_dashboard=1" in notes


# --- the operator's guide -----------------------------------------------------------------


def test_the_guide_names_only_values_that_exist(repo_root: Path, chart_dir: Path) -> None:
    guide = (repo_root / "docs" / "kubernetes.md").read_text()
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    named = set(re.findall(r"`([A-Za-z]+(?:\.[A-Za-z<>-]+)+)`", guide))
    checked = [path for path in named if path.split(".")[0] in values]
    assert len(checked) > 30
    unknown = [path for path in checked if not _resolves(values, path.split("."))]
    assert unknown == []
    assert "[docs/kind.md](kind.md)" in guide  # the kind/Tilt path is one link away


def _resolves(node: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    if not isinstance(node, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head == "<key>":
        return all(_resolves(child, rest) for child in node.values())
    return head in node and _resolves(node[head], rest)
