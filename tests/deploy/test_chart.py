"""The Helm chart (deploy/helm/voicemesh), checked with the real helm v3 and v4.

Lint, render with each ci/*-values.yaml at two Kubernetes versions, validate every object
against the Kubernetes schemas (kubernetes-validate, strict) and the prometheus-operator
CRD schemas (node), then assert on the rendered objects what an operator relies on:
names and labels, probes, drain, security, env, NetworkPolicy flows, autoscaling,
monitoring, secrets and the failures that name the value to fix.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from voicemesh.mesh.service import LIVENESS

from .conftest import (
    HELMS,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    TOKEN_SET,
    Render,
    Renderer,
    ci_values_files,
)

pytestmark = pytest.mark.integration

FULLNAME = f"{RELEASE}-voicemesh"
SERVICES = ("media-edge", "stt", "reasoning", "tts", "session-router")
GRPC_PORTS = {"session-router": 50051, "stt": 50052, "reasoning": 50053, "tts": 50054, "media-edge": 50055}
CRD_GROUP = "monitoring.coreos.com/v1"
CI = {p.name: p for p in ci_values_files()}


def _selector(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "voicemesh",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": component,
    }


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env in {container['name']}: {names}"
    return {e["name"]: e for e in container["env"]}


def _component(doc: dict[str, Any]) -> str | None:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


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
            assert render.ok().docs == ci_renders[("helm4", values, kube)].ok().docs, (values, kube)


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
    assert not [d for d in render.docs if _component(d) in ("valkey", "nats")]
    for key in SERVICES:
        env = _env(_container(render.get("Deployment", f"{FULLNAME}-{key}")))
        assert env["VOICEMESH_REDIS_URL"]["value"] == "rediss://cache.example:6380/1"
        assert env["VOICEMESH_NATS_URL"]["value"] == "nats://bus.example:4333"
        egress_ports = {
            p["port"]
            for rule in render.get("NetworkPolicy", f"{FULLNAME}-{key}")["spec"]["egress"]
            for p in rule.get("ports", [])
        }
        assert {6380, 4333} <= egress_ports


# --- the workloads ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defaults(renderer: Renderer) -> Render:
    return renderer.template().ok()


@pytest.fixture(scope="module")
def production(ci_renders: dict[tuple[str, str, str], Render]) -> Render:
    return ci_renders[("helm4", "production-values.yaml", KUBE_VERSIONS[-1])].ok()


def test_each_enabled_service_gets_its_objects_with_the_contract_names(defaults: Render) -> None:
    for key in SERVICES:
        name = f"{FULLNAME}-{key}"
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            doc = defaults.get(kind, name)
            labels = doc["metadata"]["labels"]
            assert labels | _selector(key) == labels
            assert labels["app.kubernetes.io/part-of"] == "voicemesh"
            assert labels["app.kubernetes.io/version"] == "0.1.0"
            assert labels["helm.sh/chart"] == "voicemesh-0.1.0"
        deployment = defaults.get("Deployment", name)
        assert deployment["spec"]["selector"]["matchLabels"] == _selector(key)
        assert defaults.get("Service", name)["spec"]["selector"] == _selector(key)
        assert defaults.get("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == _selector(key)
        container = _container(deployment)
        assert container["name"] == key
        assert container["image"] == f"voicemesh/{key}:0.1.0"
    assert defaults.of_kind("HorizontalPodAutoscaler") == []  # autoscaling is opt-in
    assert len(defaults.of_kind("Deployment")) == len(SERVICES)


@pytest.mark.parametrize(
    ("release", "sets", "prefix"),
    [
        ("voicemesh", (), "voicemesh"),
        ("prod-voicemesh-eu", (), "prod-voicemesh-eu"),
        ("vm", ("fullnameOverride=voice",), "voice"),
    ],
)
def test_fullname_follows_the_release(
    renderer: Renderer, release: str, sets: tuple[str, ...], prefix: str
) -> None:
    render = renderer.template(sets=(*TOKEN_SET, *sets), release=release).ok()
    assert render.names("Deployment") == {f"{prefix}-{key}" for key in SERVICES}
    env = _env(_container(render.get("Deployment", f"{prefix}-media-edge")))
    assert env["VOICEMESH_ROUTER_ADDRESS"]["value"] == f"{prefix}-session-router:50051"
    assert env["VOICEMESH_REDIS_URL"]["value"] == f"redis://{prefix}-valkey:6379/0"


def test_image_registry_and_tag_apply_to_every_voicemesh_image(renderer: Renderer) -> None:
    render = renderer.template(
        sets=(*TOKEN_SET, "image.registry=localhost:5001", "image.tag=dev", "services.stt.image.tag=stt1")
    ).ok()
    images = {_container(d)["name"]: _container(d)["image"] for d in render.of_kind("Deployment")}
    assert images["stt"] == "localhost:5001/voicemesh/stt:stt1"
    assert images["tts"] == "localhost:5001/voicemesh/tts:dev"
    test_pod = render.get("Pod", f"{FULLNAME}-test-call")
    assert test_pod["spec"]["containers"][0]["image"] == "localhost:5001/voicemesh/cli:dev"


def test_disabling_a_service_removes_its_objects(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false")).ok()
    assert [d["kind"] for d in render.docs if _component(d) == "tts"] == []
    assert not [d for d in render.docs if d["metadata"]["name"] == f"{FULLNAME}-tts"]
    edge_policy = render.get("NetworkPolicy", f"{FULLNAME}-media-edge")
    assert "tts" not in json.dumps(edge_policy["spec"]["egress"])
    assert {_container(d)["name"] for d in render.of_kind("Deployment")} == set(SERVICES) - {"tts"}


def test_probes_are_grpc_on_the_service_port(defaults: Render) -> None:
    for key in SERVICES:
        container = _container(defaults.get("Deployment", f"{FULLNAME}-{key}"))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == GRPC_PORTS[key] and ports["metrics"] == 9464
        for probe in ("startupProbe", "readinessProbe"):  # "": NOT_SERVING while it drains
            assert container[probe]["grpc"] == {"port": GRPC_PORTS[key]}, (key, probe)
        # Liveness asks the name that stays SERVING while draining: no restart mid-drain.
        assert container["livenessProbe"]["grpc"] == {"port": GRPC_PORTS[key], "service": LIVENESS}
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        # stt and tts load their models before they report SERVING.
        assert budget >= (300 if key in ("stt", "tts") else 60), (key, budget)
    edge_ports = {
        p["name"]: p["containerPort"]
        for p in _container(defaults.get("Deployment", f"{FULLNAME}-media-edge"))["ports"]
    }
    assert edge_ports["http"] == 8080


@pytest.mark.parametrize("sets", [(), ("services.stt.terminationGracePeriodSeconds=90",)])
def test_pods_drain_before_they_stop(renderer: Renderer, sets: tuple[str, ...]) -> None:
    render = renderer.template(sets=(*TOKEN_SET, *sets)).ok()
    expected_grace = {key: 60 for key in SERVICES} | {"media-edge": 120} | ({"stt": 90} if sets else {})
    for key in SERVICES:
        deployment = render.get("Deployment", f"{FULLNAME}-{key}")
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace == expected_grace[key]
        container = _container(deployment)
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:5] == ["python", "-m", "voicemesh.mesh.probe", "drain", "--timeout"]
        drain = float(_env(container)["VOICEMESH_DRAIN_TIMEOUT_S"]["value"])
        assert drain == grace - 10
        # The hook waits as long as the service would, and SIGTERM still has 10 s to stop.
        assert float(command[5]) == drain


def test_pods_run_unprivileged_on_a_read_only_filesystem(defaults: Render) -> None:
    pods = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in defaults.of_kind("Deployment")]
    pods.append(("test", defaults.get("Pod", f"{FULLNAME}-test-call")["spec"]))
    for name, spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["automountServiceAccountToken"] is False, name
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"]
        assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}[tmp], name
    for kind_name in ("valkey", "nats"):
        spec = defaults.get("StatefulSet", f"{FULLNAME}-{kind_name}")["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_each_pod_tells_the_registry_who_and_where_it_is(defaults: Render) -> None:
    for key in SERVICES:
        env = _env(_container(defaults.get("Deployment", f"{FULLNAME}-{key}")))
        field = {
            name: env[name]["valueFrom"]["fieldRef"]["fieldPath"]
            for name in ("VOICEMESH_INSTANCE_ID", "VOICEMESH_ADVERTISE_HOST", "VOICEMESH_ZONE")
        }
        assert field == {
            "VOICEMESH_INSTANCE_ID": "metadata.name",
            "VOICEMESH_ADVERTISE_HOST": "status.podIP",
            "VOICEMESH_ZONE": "metadata.labels['topology.kubernetes.io/zone']",
        }
        values = {name: e.get("value") for name, e in env.items()}
        assert values["VOICEMESH_REGION"] == "local"
        assert values["VOICEMESH_BIND_HOST"] == "0.0.0.0"
        assert values["VOICEMESH_GRPC_PORT"] == str(GRPC_PORTS[key])
        assert values["VOICEMESH_METRICS_PORT"] == "9464"
        assert values["VOICEMESH_LOG_FORMAT"] == "json"
        assert values["VOICEMESH_REDIS_URL"] == f"redis://{FULLNAME}-valkey:6379/0"
        assert values["VOICEMESH_NATS_URL"] == f"nats://{FULLNAME}-nats:4222"
        assert values["HF_HUB_OFFLINE"] == "1" and values["PYTHONUNBUFFERED"] == "1"
        assert int(values["VOICEMESH_CAPACITY"]) >= 1
    edge = _env(_container(defaults.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_WS_HOST"]["value"] == "0.0.0.0" and edge["VOICEMESH_WS_PORT"]["value"] == "8080"
    assert edge["VOICEMESH_ROUTER_ADDRESS"]["value"] == f"{FULLNAME}-session-router:50051"
    assert edge["VOICEMESH_CAPACITY"]["value"] == "40"
    assert edge["VOICEMESH_EDGE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicemesh-edge-token",
        "key": "token",
    }
    assert "VOICEMESH_TWILIO_AUTH_TOKEN" not in edge


def test_pods_spread_across_zones_and_nodes(defaults: Render) -> None:
    for key in SERVICES:
        spec = defaults.get("Deployment", f"{FULLNAME}-{key}")["spec"]["template"]["spec"]
        constraints = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
        assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for c in constraints.values():
            assert c["whenUnsatisfiable"] == "ScheduleAnyway"
            assert c["labelSelector"]["matchLabels"] == _selector(key)


def test_secrets_come_by_reference(production: Render) -> None:
    edge = _env(_container(production.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_TWILIO_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicemesh-twilio",
        "key": "auth-token",
    }
    assert edge["VOICEMESH_TWILIO_STREAM_URL"]["value"] == "wss://voice.example.com/v1/twilio"
    reasoning = _env(_container(production.get("Deployment", f"{FULLNAME}-reasoning")))
    assert reasoning["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicemesh-llm",
        "key": "openai-api-key",
    }
    assert "OPENAI_API_KEY" not in _env(_container(production.get("Deployment", f"{FULLNAME}-stt")))
    for key in SERVICES:
        env = _env(_container(production.get("Deployment", f"{FULLNAME}-{key}")))
        assert env["VOICEMESH_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "voicemesh-redis",
            "key": "url",
        }
    assert production.of_kind("Secret") == []  # the chart makes no Secret in production


def test_dev_secret_and_valkey_password(renderer: Renderer) -> None:
    dev = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    (secret,) = dev.of_kind("Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-edge-token"
    import base64

    assert base64.b64decode(secret["data"]["token"]).decode() == "voicemesh-dev-token-not-a-secret"
    edge = _env(_container(dev.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_EDGE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "token",
    }
    random_token = renderer.template(sets=("auth.createDevSecret=true",)).ok().of_kind("Secret")[0]
    assert len(base64.b64decode(random_token["data"]["token"])) == 32

    render = renderer.template(sets=(*TOKEN_SET, "valkey.auth.existingSecret=valkey-pw")).ok()
    env = _container(render.get("Deployment", f"{FULLNAME}-stt"))["env"]
    names = [e["name"] for e in env]
    # $(VOICEMESH_REDIS_PASSWORD) expands only when the variable is defined earlier.
    assert names.index("VOICEMESH_REDIS_PASSWORD") < names.index("VOICEMESH_REDIS_URL")
    url = env[names.index("VOICEMESH_REDIS_URL")]["value"]
    assert url == f"redis://:$(VOICEMESH_REDIS_PASSWORD)@{FULLNAME}-valkey:6379/0"
    valkey = _container(render.get("StatefulSet", f"{FULLNAME}-valkey"))
    assert valkey["args"][valkey["args"].index("--requirepass") + 1] == "$(VALKEY_PASSWORD)"


def test_dev_values_suit_kind_and_tilt(renderer: Renderer) -> None:
    dev = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    for d in dev.of_kind("Deployment"):
        assert d["spec"]["replicas"] == 1
        assert _container(d)["imagePullPolicy"] == "IfNotPresent"
    assert dev.names("StatefulSet") == {f"{FULLNAME}-valkey", f"{FULLNAME}-nats"}
    assert dev.of_kind("NetworkPolicy")
    # kind maps host 8080 to this NodePort on the control plane, which runs no edge pod.
    http = dev.get("Service", f"{FULLNAME}-media-edge-http")
    assert http["spec"]["type"] == "NodePort" and http["spec"]["externalTrafficPolicy"] == "Cluster"
    assert [(p["nodePort"], p["targetPort"]) for p in http["spec"]["ports"]] == [(30080, "http")]
    # Tilt's live update writes into the images: only dev turns the read-only root off.
    for d in dev.of_kind("Deployment"):
        assert _container(d)["securityContext"]["readOnlyRootFilesystem"] is False
        assert _container(d)["securityContext"]["runAsNonRoot"] is True


def test_builtin_nats_keeps_jetstream_on_a_volume(defaults: Render) -> None:
    sts = defaults.get("StatefulSet", f"{FULLNAME}-nats")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in _container(sts)["volumeMounts"]}
    config = defaults.get("ConfigMap", f"{FULLNAME}-nats")["data"]["nats.conf"]
    assert f"store_dir: {mounts[claim['metadata']['name']]}" in config
    assert {p["port"] for p in defaults.get("Service", f"{FULLNAME}-nats")["spec"]["ports"]} == {4222, 8222}
    assert {p["port"] for p in defaults.get("Service", f"{FULLNAME}-valkey")["spec"]["ports"]} == {6379}


# --- autoscaling --------------------------------------------------------------------------

LOAD_METRICS = {
    "stt": ("voicemesh_queue_depth", {"service": "stt", "queue": "decode"}),
    "tts": ("voicemesh_queue_depth", {"service": "tts", "queue": "synthesis"}),
    "reasoning": ("voicemesh_requests_in_flight", {"service": "reasoning"}),
    "media-edge": ("voicemesh_sessions_active", {"service": "media-edge"}),
}


def test_each_stage_scales_on_cpu_and_its_own_load(production: Render) -> None:
    assert production.names("HorizontalPodAutoscaler") == {f"{FULLNAME}-{key}" for key in SERVICES}
    for key in SERVICES:
        hpa = production.get("HorizontalPodAutoscaler", f"{FULLNAME}-{key}")
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"{FULLNAME}-{key}",
        }
        metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
        assert metrics["Resource"]["resource"]["name"] == "cpu"
        if key in LOAD_METRICS:
            name, labels = LOAD_METRICS[key]
            pods = metrics["Pods"]["pods"]
            assert pods["metric"] == {"name": name, "selector": {"matchLabels": labels}}
            assert pods["target"]["type"] == "AverageValue"
        else:
            assert set(metrics) == {"Resource"}
        # The HPA owns the replica count.
        assert "replicas" not in production.get("Deployment", f"{FULLNAME}-{key}")["spec"]


def test_load_metric_needs_the_adapter_or_an_explicit_opt_in(renderer: Renderer) -> None:
    base = (*TOKEN_SET, "services.stt.autoscaling.enabled=true")
    cpu_only = renderer.template(sets=base).ok().get("HorizontalPodAutoscaler", f"{FULLNAME}-stt")
    assert [m["type"] for m in cpu_only["spec"]["metrics"]] == ["Resource"]
    opted = renderer.template(sets=(*base, "services.stt.autoscaling.loadMetric.enabled=true")).ok()
    hpa = opted.get("HorizontalPodAutoscaler", f"{FULLNAME}-stt")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]


def test_adapter_rules_serve_every_hpa_metric(production: Render, chart_dir: Path) -> None:
    adapter = yaml.safe_load((chart_dir / "files" / "adapter" / "prometheus-adapter-values.yaml").read_text())
    rules = adapter["rules"]["custom"]
    served = {r["name"]["as"]: r for r in rules}
    for hpa in production.of_kind("HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                rule = served[metric["pods"]["metric"]["name"]]
                assert rule["resources"]["overrides"] == {
                    "namespace": {"resource": "namespace"},
                    "pod": {"resource": "pod"},
                }
                assert "<<.LabelMatchers>>" in rule["metricsQuery"]
    config = production.get("ConfigMap", f"{FULLNAME}-adapter-rules")
    assert config["metadata"]["namespace"] == "monitoring"
    assert yaml.safe_load(config["data"]["config.yaml"]) == {"rules": rules}
    assert adapter["rules"]["default"] is False


# --- networking ---------------------------------------------------------------------------


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
    assert sip["spec"]["selector"] == _selector("media-edge")
    ports = {(p["port"], p["protocol"]) for p in sip["spec"]["ports"]}
    assert {(5060, "UDP"), (5060, "TCP")} <= ports
    assert {p for p, proto in ports if proto == "UDP" and p != 5060} == set(range(20000, 20050))
    edge = _env(_container(render.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_SIP_PUBLIC_HOST"]["value"] == "203.0.113.10"


def test_sip_host_network_mode(ci_renders: dict[tuple[str, str, str], Render]) -> None:
    render = ci_renders[("helm4", "sip-hostnetwork-values.yaml", KUBE_VERSIONS[-1])].ok()
    edge = render.get("Deployment", f"{FULLNAME}-media-edge")
    spec = edge["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert edge["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    host_ports = {(p["hostPort"], p["protocol"]) for p in _container(edge)["ports"] if "hostPort" in p}
    assert host_ports == {(5060, "UDP"), (5060, "TCP")}
    mounts = {m["mountPath"] for m in _container(edge)["volumeMounts"]}
    assert {"/etc/voicemesh/sip-tls", "/etc/voicemesh/srtp"} <= mounts
    assert f"{FULLNAME}-media-edge-sip" not in render.names("Service")
    # Other pods stay off the node network.
    assert not [
        d
        for d in render.of_kind("Deployment")
        if d is not edge and d["spec"]["template"]["spec"].get("hostNetwork")
    ]


def test_ingress_routes_to_the_edge_http_port(production: Render) -> None:
    (ingress,) = production.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "voice.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULLNAME}-media-edge", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "voice-example-com-tls"


# NetworkPolicy evaluation: which (source, destination, port) flows the rendered policies
# let through, for a small universe of pods and addresses.


@dataclass(frozen=True)
class Peer:
    name: str
    namespace: str | None  # None: an address outside the cluster
    labels: tuple[tuple[str, str], ...] = ()
    ip: str = "10.1.2.3"
    ports: tuple[tuple[int, str], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
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


def _peer_matches(rule_peer: dict[str, Any], who: Peer, policy_namespace: str) -> bool:
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
    elif not _matches(ns_selector, {"kubernetes.io/metadata.name": who.namespace}):
        return False
    return _matches(rule_peer.get("podSelector") or {}, who.label_map)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
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


def _side_allows(
    policies: list[dict[str, Any]], subject: Peer, other: Peer, port: int, protocol: str, direction: str
) -> bool:
    if subject.namespace != NAMESPACE:
        return True  # not a pod these policies can select
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], subject.label_map)
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


def _allowed_flows(render: Render, extra_peers: tuple[Peer, ...] = ()) -> set[tuple[str, str, int, str]]:
    policies = render.of_kind("NetworkPolicy")
    release: list[Peer] = []
    for doc in [*render.of_kind("Deployment"), *render.of_kind("StatefulSet")]:
        pod = doc["spec"]["template"]
        ports = tuple(
            (p["containerPort"], p.get("protocol", "TCP")) for p in pod["spec"]["containers"][0]["ports"]
        )
        release.append(
            Peer(
                _component(doc) or "",
                NAMESPACE,
                tuple(sorted(pod["metadata"]["labels"].items())),
                ports=ports,
            )
        )
    for pod in render.of_kind("Pod"):
        release.append(Peer("test", NAMESPACE, tuple(sorted(pod["metadata"]["labels"].items()))))
    others = (
        Peer("prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),), ports=((9090, "TCP"),)),
        Peer("kube-dns", "kube-system", (("k8s-app", "kube-dns"),), ports=((53, "UDP"), (53, "TCP"))),
        Peer("neighbour", NAMESPACE, (("app", "other"),), ports=((80, "TCP"),)),
        Peer("internet", None, ip="203.0.113.7", ports=((443, "TCP"),)),
        *extra_peers,
    )
    flows = set()
    for src in (*release, *others):
        for dst in (*release, *others):
            if src is dst or (src not in release and dst not in release):
                continue
            for port, protocol in dst.ports:
                if _side_allows(policies, dst, src, port, protocol, "Ingress") and _side_allows(
                    policies, src, dst, port, protocol, "Egress"
                ):
                    flows.add((src.name, dst.name, port, protocol))
    return flows


def _contract_flows(services: tuple[str, ...], callers: tuple[str, ...]) -> set[tuple[str, str, int, str]]:
    flows = {("media-edge", key, GRPC_PORTS[key], "TCP") for key in services if key != "media-edge"}
    for key in services:
        flows |= {(key, "valkey", 6379, "TCP"), (key, "nats", 4222, "TCP"), ("prometheus", key, 9464, "TCP")}
    for pod in (*services, "test"):
        flows |= {(pod, "kube-dns", 53, "UDP"), (pod, "kube-dns", 53, "TCP")}
    flows.add(("prometheus", "nats", 8222, "TCP"))
    flows |= {(caller, "media-edge", 8080, "TCP") for caller in (*callers, "test")}
    return flows


def test_network_policies_allow_exactly_the_contract_flows(defaults: Render) -> None:
    allowed = _allowed_flows(defaults)
    # Callers come from anywhere by default: any address or pod that is not itself locked down.
    expected = _contract_flows(SERVICES, callers=("internet", "neighbour", "prometheus", "kube-dns"))
    assert allowed - expected == set(), "flows beyond the contract"
    assert expected - allowed == set(), "contract flows blocked"


def test_stt_accepts_only_the_edge_and_prometheus(defaults: Render) -> None:
    into_stt = {(src, port) for src, dst, port, _ in _allowed_flows(defaults) if dst == "stt"}
    assert into_stt == {("media-edge", 50052), ("prometheus", 9464)}


def test_network_policies_follow_the_enabled_services(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false")).ok()
    expected = _contract_flows(
        tuple(k for k in SERVICES if k != "tts"), callers=("internet", "neighbour", "prometheus", "kube-dns")
    )
    assert _allowed_flows(render) == expected


def test_production_network_policies(production: Render) -> None:
    nginx = Peer("ingress-nginx", "ingress-nginx", (("app", "nginx"),), ports=((80, "TCP"),))
    store = Peer("external-store", None, ip="10.20.3.4", ports=((6380, "TCP"), (4222, "TCP")))
    elsewhere = Peer("elsewhere-store", None, ip="192.0.2.9", ports=((6380, "TCP"),))
    allowed = _allowed_flows(production, (nginx, store, elsewhere))
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
        if _side_allows(policies, edge, carrier, port, proto, "Ingress")
    }
    assert let_in == set(edge_ports[:4])
    assert not any(
        _side_allows(policies, edge, stranger, port, proto, "Ingress") for port, proto in edge_ports
    )
    # RTP replies go to whatever port the far end chose.
    assert _side_allows(policies, edge, carrier, 40000, "UDP", "Egress")
    stt_labels = tuple(
        sorted(render.get("Deployment", f"{FULLNAME}-stt")["spec"]["template"]["metadata"]["labels"].items())
    )
    assert not _side_allows(policies, Peer("stt", NAMESPACE, stt_labels), carrier, 40000, "UDP", "Egress")


# --- monitoring ---------------------------------------------------------------------------


def test_service_monitor_scrapes_every_service(production: Render) -> None:
    (monitor,) = production.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    # The metrics' own `service` label (stt, tts, ...) must survive the scrape.
    assert endpoint["honorLabels"] is True
    # ... and the target's own series (`up`) carry the same key, not the Service name.
    assert endpoint["relabelings"][0] == {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
        "targetLabel": "service",
        "action": "replace",
    }
    selector = monitor["spec"]["selector"]
    selected = {
        _component(s) for s in production.of_kind("Service") if _matches(selector, s["metadata"]["labels"])
    }
    assert selected == set(SERVICES)


def test_prometheus_rule_embeds_the_rules_file(production: Render, chart_dir: Path) -> None:
    rules = yaml.safe_load((chart_dir / "files" / "rules" / "voicemesh.rules.yaml").read_text())
    (rule,) = production.of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == (rules.get("groups") or [])


def test_dashboards_configmaps_carry_every_dashboard(
    production: Render, defaults: Render, chart_dir: Path
) -> None:
    files = sorted((chart_dir / "files" / "dashboards").glob("*.json"))
    for render in (production, defaults):
        maps = [
            c for c in render.of_kind("ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"
        ]
        embedded = {key: json.loads(value) for c in maps for key, value in c["data"].items()}
        assert embedded == {f.name: json.loads(f.read_text()) for f in files}


@pytest.fixture(scope="module")
def observability_chart(tmp_path_factory: pytest.TempPathFactory, chart_dir: Path) -> Path:
    """A copy of the chart with dashboards and rules in place, whatever the repository has."""
    copy = tmp_path_factory.mktemp("chart") / "voicemesh"
    shutil.copytree(chart_dir, copy)
    dashboards = copy / "files" / "dashboards"
    shutil.rmtree(dashboards, ignore_errors=True)
    dashboards.mkdir(parents=True)
    (dashboards / "calls_overview.json").write_text(
        json.dumps({"title": "Calls", "uid": "vm-calls", "panels": []})
    )
    (dashboards / "Media-Quality.json").write_text(
        json.dumps({"title": "Media", "uid": "vm-media", "panels": [{"id": 1}]})
    )
    rules = {
        "groups": [
            {
                "name": "voicemesh.recording",
                "rules": [
                    {
                        "record": "voicemesh:v2v:p95",
                        "expr": "histogram_quantile(0.95, sum by (le) (rate(x[5m])))",
                    }
                ],
            },
            {
                "name": "voicemesh.alerts",
                "rules": [
                    {
                        "alert": "VoicemeshStageDown",
                        "expr": "up == 0",
                        "for": "2m",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "{{ $labels.service }} is down"},
                    }
                ],
            },
        ]
    }
    (copy / "files" / "rules" / "voicemesh.rules.yaml").write_text(yaml.safe_dump(rules))
    return copy


def test_chart_embeds_dashboards_and_rules_when_present(
    renderer: Renderer, observability_chart: Path
) -> None:
    render = renderer.template(
        sets=(
            *TOKEN_SET,
            "metrics.prometheusRule.enabled=true",
            "metrics.dashboards.label=grafana_dash",
            "metrics.dashboards.labelValue=yes",
        ),
        chart=observability_chart,
    ).ok()
    (rule,) = render.of_kind("PrometheusRule")
    source = yaml.safe_load((observability_chart / "files" / "rules" / "voicemesh.rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]  # alert templates pass through untouched
    maps = {
        c["metadata"]["name"]: c
        for c in render.of_kind("ConfigMap")
        if "grafana_dash" in c["metadata"]["labels"]
    }
    assert set(maps) == {f"{FULLNAME}-dashboard-calls-overview", f"{FULLNAME}-dashboard-media-quality"}
    assert all(c["metadata"]["labels"]["grafana_dash"] == "yes" for c in maps.values())
    embedded = {k: json.loads(v) for c in maps.values() for k, v in c["data"].items()}
    for path in (observability_chart / "files" / "dashboards").glob("*.json"):
        assert embedded[path.name] == json.loads(path.read_text())
    for doc in render.of_kind("ConfigMap"):
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
    off = renderer.template(
        sets=(*TOKEN_SET, "metrics.dashboards.enabled=false"), chart=observability_chart
    ).ok()
    assert not [c for c in off.of_kind("ConfigMap") if "dashboard" in c["metadata"]["name"]]


# --- helm test and NOTES ------------------------------------------------------------------


def test_helm_test_pod_places_a_call(defaults: Render) -> None:
    pod = defaults.get("Pod", f"{FULLNAME}-test-call")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "voicemesh/cli:0.1.0"
    env = _env(container)
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
    env = {k: v["value"] for k, v in _env(container).items() if "value" in v}
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
    # helm v4 renders NOTES in a client-only dry run (v3 wants a cluster for it).
    proc = subprocess.run(
        [
            str(helm_binaries["helm4"]),
            "install",
            RELEASE,
            str(chart_dir),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "--set",
            TOKEN_SET[0],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"KUBECONFIG": str(tmp_path / "none"), "HELM_CONFIG_HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
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
    assert "## kind and Tilt\n\nSee deploy/kind/ and the Tiltfile" in guide


def _resolves(node: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    if not isinstance(node, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head == "<key>":
        return all(_resolves(child, rest) for child in node.values())
    return head in node and _resolves(node[head], rest)
