"""The Helm chart's workloads, as rendered: names and labels, images, probes, drain,
security, the environment each pod gets, secrets, the dev values, the built-in stores and
autoscaling (HPAs and the adapter rules that feed them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from voicemesh.mesh.service import LIVENESS

from .conftest import (
    CI,
    FULLNAME,
    GRPC_PORTS,
    HEALTH_PORTS,
    SERVICES,
    TOKEN_SET,
    Render,
    Renderer,
    component_of,
    container_of,
    dev_secrets,
    env_of,
    selector_of,
)

pytestmark = pytest.mark.integration


# --- names, pods and what they run with ---------------------------------------------------


def test_each_enabled_service_gets_its_objects_with_the_contract_names(defaults: Render) -> None:
    for key in SERVICES:
        name = f"{FULLNAME}-{key}"
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            doc = defaults.get(kind, name)
            labels = doc["metadata"]["labels"]
            assert labels | selector_of(key) == labels
            assert labels["app.kubernetes.io/part-of"] == "voicemesh"
            assert labels["app.kubernetes.io/version"] == "0.1.0"
            assert labels["helm.sh/chart"] == "voicemesh-0.1.0"
        deployment = defaults.get("Deployment", name)
        assert deployment["spec"]["selector"]["matchLabels"] == selector_of(key)
        assert defaults.get("Service", name)["spec"]["selector"] == selector_of(key)
        pdb = defaults.get("PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == selector_of(key)
        container = container_of(deployment)
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
    env = env_of(container_of(render.get("Deployment", f"{prefix}-media-edge")))
    assert env["VOICEMESH_ROUTER_ADDRESS"]["value"] == f"{prefix}-session-router:50051"
    assert (
        env["VOICEMESH_REDIS_URL"]["value"] == f"redis://media-edge:$(MESH_PASSWORD)@{prefix}-valkey:6379/0"
    )


def test_image_registry_and_tag_apply_to_every_voicemesh_image(renderer: Renderer) -> None:
    render = renderer.template(
        sets=(*TOKEN_SET, "image.registry=localhost:5001", "image.tag=dev", "services.stt.image.tag=stt1")
    ).ok()
    images = {container_of(d)["name"]: container_of(d)["image"] for d in render.of_kind("Deployment")}
    assert images["stt"] == "localhost:5001/voicemesh/stt:stt1"
    assert images["tts"] == "localhost:5001/voicemesh/tts:dev"
    test_pod = render.get("Pod", f"{FULLNAME}-test-call")
    assert test_pod["spec"]["containers"][0]["image"] == "localhost:5001/voicemesh/cli:dev"


def test_disabling_a_service_removes_its_objects(renderer: Renderer) -> None:
    render = renderer.template(sets=(*TOKEN_SET, "services.tts.enabled=false")).ok()
    assert [d["kind"] for d in render.docs if component_of(d) == "tts"] == []
    assert not [d for d in render.docs if d["metadata"]["name"] == f"{FULLNAME}-tts"]
    edge_policy = render.get("NetworkPolicy", f"{FULLNAME}-media-edge")
    assert "tts" not in json.dumps(edge_policy["spec"]["egress"])
    assert {container_of(d)["name"] for d in render.of_kind("Deployment")} == set(SERVICES) - {"tts"}


def test_probes_are_grpc_on_the_plaintext_health_port(defaults: Render) -> None:
    """The kubelet cannot do mTLS: it asks each service's health-only port, which the
    service opens from VOICEMESH_HEALTH_PORT (and the preStop drain asks too)."""
    for key in SERVICES:
        container = container_of(defaults.get("Deployment", f"{FULLNAME}-{key}"))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        health = HEALTH_PORTS[key]
        assert ports["grpc"] == GRPC_PORTS[key] and ports["metrics"] == 9464 and ports["health"] == health
        assert env_of(container)["VOICEMESH_HEALTH_PORT"]["value"] == str(health)
        for probe in ("startupProbe", "readinessProbe"):  # "": NOT_SERVING while it drains
            assert container[probe]["grpc"] == {"port": health}, (key, probe)
        # Liveness asks the name that stays SERVING while draining: no restart mid-drain.
        assert container["livenessProbe"]["grpc"] == {"port": health, "service": LIVENESS}
        # Only the kubelet asks it: the Service leaves it out.
        service_ports = {p["port"] for p in defaults.get("Service", f"{FULLNAME}-{key}")["spec"]["ports"]}
        assert health not in service_ports
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        # stt and tts load their models before they report SERVING.
        assert budget >= (300 if key in ("stt", "tts") else 60), (key, budget)
    edge_ports = {
        p["name"]: p["containerPort"]
        for p in container_of(defaults.get("Deployment", f"{FULLNAME}-media-edge"))["ports"]
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
        container = container_of(deployment)
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:5] == ["python", "-m", "voicemesh.mesh.probe", "drain", "--timeout"]
        drain = float(env_of(container)["VOICEMESH_DRAIN_TIMEOUT_S"]["value"])
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
        env = env_of(container_of(defaults.get("Deployment", f"{FULLNAME}-{key}")))
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
        assert values["VOICEMESH_REDIS_URL"] == f"redis://{key}:$(MESH_PASSWORD)@{FULLNAME}-valkey:6379/0"
        assert values["VOICEMESH_NATS_URL"] == f"nats://{key}:$(MESH_PASSWORD)@{FULLNAME}-nats:4222"
        assert values["HF_HUB_OFFLINE"] == "1" and values["PYTHONUNBUFFERED"] == "1"
        assert int(values["VOICEMESH_CAPACITY"]) >= 1
    edge = env_of(container_of(defaults.get("Deployment", f"{FULLNAME}-media-edge")))
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
            assert c["labelSelector"]["matchLabels"] == selector_of(key)


def test_secrets_come_by_reference(production: Render) -> None:
    edge = env_of(container_of(production.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_TWILIO_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicemesh-twilio",
        "key": "auth-token",
    }
    assert edge["VOICEMESH_TWILIO_STREAM_URL"]["value"] == "wss://voice.example.com/v1/twilio"
    reasoning = env_of(container_of(production.get("Deployment", f"{FULLNAME}-reasoning")))
    assert reasoning["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "voicemesh-llm",
        "key": "openai-api-key",
    }
    assert "OPENAI_API_KEY" not in env_of(container_of(production.get("Deployment", f"{FULLNAME}-stt")))
    for key in SERVICES:
        env = env_of(container_of(production.get("Deployment", f"{FULLNAME}-{key}")))
        assert env["VOICEMESH_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": f"voicemesh-redis-{key}",
            "key": "url",
        }
    assert production.of_kind("Secret") == []  # the chart makes no Secret in production


def test_dev_secrets(renderer: Renderer) -> None:
    dev = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    assert {s["metadata"]["name"] for s in dev_secrets(dev)} == {
        f"{FULLNAME}-edge-token",
        f"{FULLNAME}-call-tokens",
    }
    secret = dev.get("Secret", f"{FULLNAME}-edge-token")
    assert base64.b64decode(secret["data"]["token"]).decode() == "voicemesh-dev-token-not-a-secret"
    edge = env_of(container_of(dev.get("Deployment", f"{FULLNAME}-media-edge")))
    assert edge["VOICEMESH_EDGE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "token",
    }
    (random_token,) = dev_secrets(renderer.template(sets=("auth.createDevSecret=true",)).ok())
    assert len(base64.b64decode(random_token["data"]["token"])) == 32


def test_dev_values_suit_kind_and_tilt(renderer: Renderer) -> None:
    dev = renderer.template(values=[CI["dev-values.yaml"]], sets=()).ok()
    for d in dev.of_kind("Deployment"):
        assert d["spec"]["replicas"] == 1
        assert container_of(d)["imagePullPolicy"] == "IfNotPresent"
    assert dev.names("StatefulSet") == {f"{FULLNAME}-valkey", f"{FULLNAME}-nats"}
    assert dev.of_kind("NetworkPolicy")
    # kind maps host 8080 to this NodePort on the control plane, which runs no edge pod.
    http = dev.get("Service", f"{FULLNAME}-media-edge-http")
    assert http["spec"]["type"] == "NodePort" and http["spec"]["externalTrafficPolicy"] == "Cluster"
    assert [(p["nodePort"], p["targetPort"]) for p in http["spec"]["ports"]] == [(30080, "http")]
    # Tilt's live update writes into the images: only dev turns the read-only root off.
    for d in dev.of_kind("Deployment"):
        assert container_of(d)["securityContext"]["readOnlyRootFilesystem"] is False
        assert container_of(d)["securityContext"]["runAsNonRoot"] is True


def test_builtin_nats_keeps_jetstream_on_a_volume(defaults: Render) -> None:
    sts = defaults.get("StatefulSet", f"{FULLNAME}-nats")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    nats = sts["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in nats["volumeMounts"]}
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
