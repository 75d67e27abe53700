"""deploy/kind: the cluster config against kind's v1alpha4 fields (kind_v1alpha4.schema.json,
pinned to kind v0.29.0) and against what the chart, the registry script, the Tiltfile and
docs/kind.md expect of it.

No kind or Docker runs here: the unit tests check the files, the integration tests hold the
port mappings against the edge's NodePorts as real helm renders them with the Tiltfile's values.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KIND_DIR = ROOT / "deploy" / "kind"
CONFIG = KIND_DIR / "cluster.yaml"
REGISTRY_SH = KIND_DIR / "registry.sh"
DOCS = ROOT / "docs" / "kind.md"
SCHEMA = json.loads((HERE / "kind_v1alpha4.schema.json").read_text())
ZONE = "topology.kubernetes.io/zone"
NODE_PORT_RANGE = range(30000, 32768)  # kube-apiserver's default --service-node-port-range


def _harness() -> ModuleType:
    name = "voicemesh_deploy_tilt_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "tilt" / "harness.py")
        assert spec and spec.loader
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def load_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def mappings(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for node in config.get("nodes", []) for m in node.get("extraPortMappings", [])]


def config_problems(config: dict[str, Any]) -> list[str]:
    """What kind would refuse, or what would leave the dev cluster short of what voicemesh needs."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(config)
    ]
    nodes = config.get("nodes", [])
    roles = Counter(n.get("role", "control-plane") for n in nodes)
    if nodes and roles["control-plane"] < 1:
        problems.append("no control-plane node")
    zones = [n.get("labels", {}).get(ZONE) for n in nodes if n.get("role") == "worker"]
    if len(set(filter(None, zones))) < 2 or None in zones:
        problems.append(f"workers need two or more distinct {ZONE} labels, one each: got {zones}")
    ports = Counter((m.get("protocol", "TCP"), m.get("hostPort")) for m in mappings(config))
    problems += [
        f"host port {port}/{proto} is mapped {n} times" for (proto, port), n in ports.items() if n > 1
    ]
    return problems


def registry_settings() -> dict[str, str]:
    """The defaults registry.sh runs with, read from its `name="${VAR:-default}"` lines."""
    text = REGISTRY_SH.read_text()
    found = dict(re.findall(r'^(\w+)="\$\{\w+:-([^}]+)\}"', text, re.MULTILINE))
    found |= dict(re.findall(r'^(certs_dir)="([^"]+)"', text, re.MULTILINE))
    return found


# -- unit: the config, and the negative cases that prove the checks bite ---------------------


@pytest.mark.unit
def test_the_cluster_config_is_valid_and_fit_for_voicemesh() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    config = load_config()
    problems = config_problems(config)
    assert not problems, "\n".join(problems)
    assert [n.get("role", "control-plane") for n in config["nodes"]].count("control-plane") == 1


@pytest.mark.unit
def test_an_unknown_field_is_rejected() -> None:
    config = load_config()
    config["nodes"][0]["extraPortMapping"] = config["nodes"][0].pop("extraPortMappings")  # misspelt
    assert any("'extraPortMapping' was unexpected" in p for p in config_problems(config))
    config = load_config()
    config["networking"] = {"kubeProxyMode": "userspace"}
    assert any("kubeProxyMode" in p for p in config_problems(config))


@pytest.mark.unit
def test_a_duplicated_host_port_is_rejected() -> None:
    config = load_config()
    first = mappings(config)[0]
    config["nodes"][1].setdefault("extraPortMappings", []).append(dict(first))
    assert (
        f"host port {first['hostPort']}/{first.get('protocol', 'TCP')} is mapped 2 times"
        in config_problems(config)
    )


@pytest.mark.unit
def test_a_cluster_without_a_control_plane_or_zones_is_rejected() -> None:
    config = load_config()
    for node in config["nodes"]:
        node["role"] = "worker"
        node.pop("labels", None)
    problems = config_problems(config)
    assert "no control-plane node" in problems
    assert any("distinct topology.kubernetes.io/zone" in p for p in problems)
    assert any("'Cluster' was expected" in p for p in config_problems({**load_config(), "kind": "Config"}))


@pytest.mark.unit
def test_containerd_reads_the_registry_config_registry_sh_writes() -> None:
    """cluster.yaml points containerd at the hosts.toml directory registry.sh fills, and the
    mirror there is the registry container's in-network address."""
    settings = registry_settings()
    patches = "\n".join(load_config()["containerdConfigPatches"])
    config_path = re.search(r'config_path\s*=\s*"([^"]+)"', patches)
    assert config_path and config_path.group(1) == settings["certs_dir"]
    script = REGISTRY_SH.read_text()
    assert '"127.0.0.1:${reg_port}:5000"' in script  # the registry listens on 5000 in Docker
    assert '[host."http://%s:5000"]' in script and '"${reg_name}"' in script
    assert 'host: "localhost:${reg_port}"' in script  # KEP-1755 ConfigMap, read by Tilt
    assert settings["reg_port"] == "5001" and settings["cluster"] == load_config()["name"]


@pytest.mark.unit
def test_registry_sh_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(REGISTRY_SH)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert REGISTRY_SH.stat().st_mode & 0o111, "registry.sh must be executable"


@pytest.mark.unit
def test_the_docs_use_the_registry_cluster_and_ports_the_files_set() -> None:
    docs = DOCS.read_text()
    settings = registry_settings()
    http = next(m for m in mappings(load_config()) if m["containerPort"] == 30080)
    assert f"localhost:{settings['reg_port']}" in docs
    assert f"ws://127.0.0.1:{http['hostPort']}/v1/call" in docs
    assert "deploy/kind/registry.sh up" in docs and "deploy/kind/registry.sh down" in docs
    assert f"kind-{settings['cluster']}" in docs
    rec = _harness().evaluate()
    assert rec.allowed_contexts == [f"kind-{settings['cluster']}"]
    for resource in rec.resources:
        for pf in resource.port_forwards:
            assert f"127.0.0.1:{pf.local}" in docs, (
                f"docs/kind.md does not mention {resource.name}'s port {pf.local}"
            )


# -- integration: the mappings land on the edge's NodePorts, as the chart renders them --------


def edge_node_ports(rendered: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(protocol, nodePort) -> its Service, for the edge's NodePort Services."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for obj in rendered:
        labels = obj.get("metadata", {}).get("labels", {})
        if obj.get("kind") != "Service" or labels.get("app.kubernetes.io/component") != "media-edge":
            continue
        if obj["spec"].get("type") not in ("NodePort", "LoadBalancer"):
            continue
        for port in obj["spec"]["ports"]:
            if "nodePort" in port:
                found[(port.get("protocol", "TCP"), port["nodePort"])] = obj
    return found


@pytest.mark.integration
@pytest.mark.parametrize("sip", [False, True], ids=["http", "sip"])
def test_each_port_mapping_reaches_a_node_port_of_the_edge(sip: bool) -> None:
    """With the Tiltfile's values (SIP switched on for the SIP mappings), every mapping's
    containerPort is an edge NodePort of its protocol, inside kind's node port range, with
    externalTrafficPolicy Cluster: the host ports land on the control plane, which runs no edge."""
    h = _harness()
    call = h.evaluate().helm[0]
    rendered = h.render_chart(call, extra_set=["mediaEdge.sip.enabled=true"] if sip else [])
    ports = edge_node_ports(rendered)
    wanted = [m for m in mappings(load_config()) if (m["hostPort"] == 5060) == sip]
    assert wanted
    for m in wanted:
        key = (m.get("protocol", "TCP"), m["containerPort"])
        assert key in ports, f"no edge NodePort {key[1]}/{key[0]} (rendered: {sorted(ports)})"
        assert ports[key]["spec"].get("externalTrafficPolicy") == "Cluster", ports[key]["metadata"]["name"]
    assert all(p in NODE_PORT_RANGE for _, p in ports), sorted(ports)
    if not sip:
        http = next(
            o for o in rendered if o["kind"] == "Service" and (("TCP", 30080) in edge_node_ports([o]))
        )
        assert [p["targetPort"] for p in http["spec"]["ports"] if p.get("nodePort") == 30080] == ["http"]


@pytest.mark.integration
def test_the_dev_token_the_docs_read_is_the_secret_the_chart_makes() -> None:
    h = _harness()
    rendered = h.render_chart(h.evaluate().helm[0])
    secrets = [o for o in rendered if o["kind"] == "Secret" and "token" in o.get("data", {})]
    assert len(secrets) == 1
    assert f"kubectl get secret {secrets[0]['metadata']['name']}" in DOCS.read_text()
    edge = next(
        o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("media-edge")
    )
    env = {e["name"]: e for c in h.containers(edge) for e in c.get("env", [])}
    assert env["VOICEMESH_EDGE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == secrets[0]["metadata"]["name"]


@pytest.mark.integration
def test_the_call_token_secret_the_docs_name_is_the_one_the_edge_reads() -> None:
    h = _harness()
    rendered = h.render_chart(h.evaluate().helm[0])
    (secret,) = [o for o in rendered if o["kind"] == "Secret" and "secret" in o.get("data", {})]
    assert f"`{secret['metadata']['name']}`" in DOCS.read_text()
    edge = next(
        o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("media-edge")
    )
    env = {e["name"]: e for c in h.containers(edge) for e in c.get("env", [])}
    assert env["VOICEMESH_CALL_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "secret",
    }
