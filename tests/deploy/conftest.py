"""Fixtures for the deployment checks: the real tools under .tools/ and rendered charts.

Rendering is the slow part (a helm process each), so every distinct
(helm, values files, --set flags, kube version) is rendered once per session and shared,
whichever test module asks for it. Also here: the chart's names and the small accessors the
test_chart*.py modules read rendered objects with.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "voicemesh"
HELMS = ("helm3", "helm4")
# Two supported Kubernetes minors: the oldest and the newest the chart is tested on.
KUBE_VERSIONS = ("1.31.0", "1.35.0")
RELEASE = "vm"
NAMESPACE = "voice"
# The one value an install must give; lint and the plain renders set it.
TOKEN_SET = ("auth.edgeToken.existingSecret=voicemesh-edge-token",)


def ci_values_files() -> list[Path]:
    return sorted((CHART / "ci").glob("*-values.yaml"))


# What the chart names, for release RELEASE.
FULLNAME = f"{RELEASE}-voicemesh"
SERVICES = ("media-edge", "stt", "reasoning", "tts", "session-router")
GRPC_PORTS = {"session-router": 50051, "stt": 50052, "reasoning": 50053, "tts": 50054, "media-edge": 50055}
# The plaintext health-only ports the kubelet probes (VOICEMESH_HEALTH_PORT).
HEALTH_PORTS = {key: port + 10 for key, port in GRPC_PORTS.items()}
CI = {p.name: p for p in ci_values_files()}


def selector_of(component: str) -> dict[str, str]:
    """The labels that select one component's pods."""
    return {
        "app.kubernetes.io/name": "voicemesh",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": component,
    }


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    """The one container of a Deployment's or StatefulSet's pods."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name (and no name twice)."""
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env in {container['name']}: {names}"
    return {e["name"]: e for e in container["env"]}


def component_of(doc: dict[str, Any]) -> str | None:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def dev_secrets(render: Render) -> list[dict[str, Any]]:
    """The dev Secrets the chart made (createDevSecret), not the mesh's certificates."""
    return [
        d
        for d in render.of_kind("Secret")
        if d["metadata"].get("annotations", {}).get("voicemesh.io/dev-secret")
    ]


# The pod annotations that checksum what each render makes anew.
RANDOM_CHECKSUMS = ("checksum/mesh-tls", "checksum/mesh-user", "checksum/mesh-users")


def without_mesh_certificates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`docs` with the random parts the chart makes (each render issues new mesh
    certificates and store passwords) blanked: the Secrets' data and the pods' checksums."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        labels = doc["metadata"].get("labels", {})
        if "voicemesh.io/mesh-tls" in labels or "voicemesh.io/mesh-user" in labels:
            doc["data"] = dict.fromkeys(doc["data"], "")
        annotations = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        for key in RANDOM_CHECKSUMS:
            if key in annotations:
                annotations[key] = ""
        out.append(doc)
    return out


@dataclass(frozen=True)
class Render:
    """One `helm template` run: its exit status, output and the parsed objects."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def ok(self) -> Render:
        assert self.returncode == 0, f"helm template failed ({' '.join(self.args)}):\n{self.stderr}"
        return self

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}

    def failed(self) -> str:
        """What helm said when it refused to render (asserting that it did)."""
        assert self.returncode != 0, f"helm template rendered ({' '.join(self.args)})"
        return self.stderr


def install_notes(
    helm: Path, chart: Path, tmp_path: Path, values: Sequence[Path] = (), sets: Iterable[str] = ()
) -> str:
    """The NOTES of `helm install` in a client-only dry run, which helm v4 renders without a
    cluster (v3 wants one for it)."""
    args = [str(helm), "install", RELEASE, str(chart), "--dry-run=client", "--namespace", NAMESPACE]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"KUBECONFIG": str(tmp_path / "none"), "HELM_CONFIG_HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


class Renderer:
    """Runs helm against a chart directory; caches each distinct invocation."""

    def __init__(self, helms: dict[str, Path], chart: Path = CHART) -> None:
        self.helms = helms
        self.chart = chart
        self._cache: dict[tuple[Any, ...], Render] = {}
        self._lock = threading.Lock()

    def template(
        self,
        helm: str = "helm4",
        values: Sequence[Path | str] = (),
        sets: Iterable[str] = TOKEN_SET,
        kube_version: str = KUBE_VERSIONS[-1],
        set_strings: Iterable[str] = (),
        release: str = RELEASE,
        chart: Path | None = None,
    ) -> Render:
        chart = chart or self.chart
        args = [str(self.helms[helm]), "template", release, str(chart), "--namespace", NAMESPACE]
        args += ["--kube-version", kube_version, "--api-versions", "monitoring.coreos.com/v1"]
        for v in values:
            args += ["-f", str(v)]
        for s in sets:
            args += ["--set", s]
        for s in set_strings:
            args += ["--set-string", s]
        key = tuple(args)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        docs: list[dict[str, Any]] = []
        if proc.returncode == 0:
            docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        result = Render(tuple(args[1:]), proc.returncode, proc.stdout, proc.stderr, docs)
        with self._lock:
            self._cache[key] = result
        return result


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART


@pytest.fixture(scope="session")
def helm_binaries() -> dict[str, Path]:
    """The pinned helm v3 and v4 that scripts/tools.sh installs."""
    helms = {name: REPO_ROOT / ".tools" / "k8s" / name for name in HELMS}
    missing = [str(p) for p in helms.values() if not p.exists()]
    if missing:
        pytest.fail(f"helm missing: {', '.join(missing)} (run scripts/tools.sh)")
    return helms


@pytest.fixture(scope="session")
def node_modules() -> Path:
    path = REPO_ROOT / ".tools" / "node" / "node_modules"
    if not (path / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.fail(f"@kubernetes-models/prometheus-operator missing under {path} (run scripts/tools.sh)")
    return path


@pytest.fixture(scope="session")
def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH (scripts/tools.sh needs it too)")
    return node


@pytest.fixture(scope="session")
def renderer(helm_binaries: dict[str, Path]) -> Renderer:
    return Renderer(helm_binaries)


@pytest.fixture(scope="session")
def ci_renders(renderer: Renderer) -> dict[tuple[str, str, str], Render]:
    """Every ci/*-values.yaml (and the defaults) with helm v3 and v4, at both Kubernetes
    versions: {(helm, values name, kube version): Render}. Rendered two at a time."""
    jobs: list[tuple[str, str, str, tuple[Path, ...]]] = []
    for helm in HELMS:
        for kube in KUBE_VERSIONS:
            jobs.append((helm, "defaults", kube, ()))
            for path in ci_values_files():
                jobs.append((helm, path.name, kube, (path,)))

    def run(job: tuple[str, str, str, tuple[Path, ...]]) -> Render:
        helm, name, kube, values = job
        # The defaults need the one required value; ci files are complete as they are.
        sets = TOKEN_SET if name == "defaults" else ()
        return renderer.template(helm, values, sets=sets, kube_version=kube)

    with ThreadPoolExecutor(max_workers=2) as pool:
        renders = list(pool.map(run, jobs))
    return {(helm, name, kube): r for (helm, name, kube, _), r in zip(jobs, renders, strict=True)}


@pytest.fixture(scope="session")
def defaults(renderer: Renderer) -> Render:
    """The chart with its defaults and the one required value."""
    return renderer.template().ok()


@pytest.fixture(scope="session")
def production(ci_renders: dict[tuple[str, str, str], Render]) -> Render:
    """ci/production-values.yaml, helm v4, the newest Kubernetes."""
    return ci_renders[("helm4", "production-values.yaml", KUBE_VERSIONS[-1])].ok()
