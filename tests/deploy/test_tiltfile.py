"""The Tiltfile, evaluated with stubbed Tilt builtins and held against the repository and the
chart as real helm renders it (tests/deploy/tilt/: the stubs, the checks and the image build).

Unit tests drive the checks with a tiny Tiltfile in a tiny repository, once as it should be
and once per mistake, so each check is shown to fail; the integration tests run them on the
real Tiltfile, the real chart (helm v4) and the Dockerfiles' own `uv sync` steps.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import starlark
import yaml

HERE = Path(__file__).resolve().parent


def _harness() -> ModuleType:
    name = "voicemesh_deploy_tilt_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "tilt" / "harness.py")
        assert spec and spec.loader
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


h = _harness()
KIND_CONFIG = h.REPO_ROOT / "deploy" / "kind" / "cluster.yaml"

# -- a tiny repository, a Tiltfile that is right for it, and the objects its chart renders ----

MINI_DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS builder
ENV UV_PROJECT_ENVIRONMENT=/opt/voicemesh/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
RUN uv sync --locked --no-editable --package voicemesh-stt
FROM ${PYTHON_IMAGE}
ARG CODE_OWNER=0:0
COPY --from=builder --chown=${CODE_OWNER} /opt/voicemesh/venv /opt/voicemesh/venv
USER 10001:10001
ENTRYPOINT ["python", "-m", "voicemesh.stt"]
"""

GOOD_TILTFILE = """\
load('ext://restart_process', 'docker_build_with_restart')
SITE = '/opt/voicemesh/venv/lib/python3.11/site-packages/voicemesh/'
docker_build_with_restart(
    'voicemesh/stt', '.', dockerfile='services/stt/Dockerfile',
    entrypoint=['python', '-m', 'voicemesh.stt'],
    build_args={'CODE_OWNER': '10001:10001'},
    restart_file='/opt/voicemesh/venv/.restart',
    only=['pyproject.toml', 'uv.lock', 'libs/mesh', 'services/stt'],
    live_update=[
        sync('services/stt/src/voicemesh/stt', SITE + 'stt'),
        sync('libs/mesh/src/voicemesh/mesh', SITE + 'mesh'),
    ],
)
k8s_yaml(helm('chart', name='voicemesh', values=['chart/dev-values.yaml']))
k8s_resource('voicemesh-valkey', new_name='valkey')
k8s_resource('voicemesh-stt', new_name='stt', resource_deps=['valkey'],
             port_forwards=[port_forward(19102, 9464, name='metrics')])
"""


@pytest.fixture
def mini_repo(tmp_path: Path) -> Path:
    files = {
        "pyproject.toml": '[project]\nname = "ws"\nversion = "0"\n',
        "uv.lock": "",
        "libs/mesh/pyproject.toml": '[project]\nname = "voicemesh-mesh"\nversion = "0"\ndependencies = []\n',
        "libs/mesh/src/voicemesh/mesh/__init__.py": "",
        "services/stt/pyproject.toml": (
            '[project]\nname = "voicemesh-stt"\nversion = "0"\n'
            'dependencies = ["voicemesh-mesh", "numpy>=2"]\n'
        ),
        "services/stt/src/voicemesh/stt/__init__.py": "",
        "services/stt/Dockerfile": MINI_DOCKERFILE,
        "chart/Chart.yaml": "apiVersion: v2\nname: voicemesh\nversion: 0.1.0\n",
        "chart/dev-values.yaml": "{}\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def workload(kind: str, name: str, image: str, ports: list[int], read_only: bool = False) -> dict[str, Any]:
    container = {
        "name": "c",
        "image": image,
        "ports": [{"containerPort": p} for p in ports],
        "securityContext": {"readOnlyRootFilesystem": read_only},
    }
    return {
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def mini_chart(read_only: bool = False) -> list[dict[str, Any]]:
    return [
        workload("Deployment", "voicemesh-stt", "voicemesh/stt:0.1.0", [50052, 9464], read_only),
        workload("StatefulSet", "voicemesh-valkey", "docker.io/valkey/valkey:8.1.3", [6379]),
        {"kind": "Service", "metadata": {"name": "voicemesh-stt"}},
    ]


def problems_of(
    root: Path, tiltfile: str, rendered: list[dict[str, Any]] | None = None, **kw: Any
) -> list[str]:
    rec = h.TiltStub(root).evaluate(tiltfile)
    return h.check(rec, mini_chart() if rendered is None else rendered, root, **kw)


def broken(old: str, new: str) -> str:
    assert old in GOOD_TILTFILE, old
    return GOOD_TILTFILE.replace(old, new)


# -- unit: the checks pass a right Tiltfile and catch each mistake ----------------------------


@pytest.mark.unit
def test_a_right_tiltfile_has_no_problems(mini_repo: Path) -> None:
    assert problems_of(mini_repo, GOOD_TILTFILE) == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "dockerfile='services/stt/Dockerfile'",
            "dockerfile='services/sst/Dockerfile'",
            "Dockerfile 'services/sst/Dockerfile' does not exist",
        ),
        (
            "sync('services/stt/src/voicemesh/stt'",
            "sync('services/stt/src/voicemesh/sst'",
            "sync path 'services/stt/src/voicemesh/sst' does not exist",
        ),
        (
            "values=['chart/dev-values.yaml']",
            "values=['chart/ci/dev-values.yaml']",
            "values file 'chart/ci/dev-values.yaml' does not exist",
        ),
        (
            "k8s_resource('voicemesh-stt'",
            "k8s_resource('voicemesh-speech'",
            "k8s_resource('voicemesh-speech'): the chart renders no such workload",
        ),
        (
            "resource_deps=['valkey']",
            "resource_deps=['redis']",
            "resource_deps names 'redis', which is no resource",
        ),
        (
            "'voicemesh/stt', '.'",
            "'voicemesh/speech', '.'",
            "image 'voicemesh/speech' is built but no rendered",
        ),
        (
            "'voicemesh/stt', '.'",
            "'voicemesh/speech', '.'",
            "runs 'voicemesh/stt', which the Tiltfile does not build",
        ),
        (
            "port_forward(19102, 9464",
            "port_forward(19102, 9999",
            "forwards to port 9999, which no container declares",
        ),
        (
            "        sync('libs/mesh/src/voicemesh/mesh', SITE + 'mesh'),\n",
            "",
            "live update misses libs/mesh/src/voicemesh/mesh",
        ),
        (
            "SITE + 'stt'",
            "'/app/stt'",
            "but the image installs it at /opt/voicemesh/venv/lib/python3.11/site-packages",
        ),
        (
            "['python', '-m', 'voicemesh.stt']",
            "['python', '-m', 'voicemesh.sst']",
            "but the image's ENTRYPOINT is",
        ),
        ("    build_args={'CODE_OWNER': '10001:10001'},\n", "", "unwritable by user 10001"),
        (
            "restart_file='/opt/voicemesh/venv/.restart'",
            "restart_file='/app/.restart'",
            "writes /app, which the image leaves unwritable",
        ),
        (
            "only=['pyproject.toml', 'uv.lock',",
            "only=['pyproject.toml',",
            "copies 'uv.lock', which only= leaves out of the context",
        ),
    ],
)
def test_each_mistake_is_named(mini_repo: Path, old: str, new: str, expected: str) -> None:
    problems = problems_of(mini_repo, broken(old, new))
    assert any(expected in p for p in problems), problems


@pytest.mark.unit
def test_colliding_port_forwards_are_named(mini_repo: Path) -> None:
    twice = GOOD_TILTFILE.replace(
        "k8s_resource('voicemesh-valkey', new_name='valkey')",
        "k8s_resource('voicemesh-valkey', new_name='valkey', port_forwards=[port_forward(19102, 6379)])",
    )
    assert any("local port 19102 is already taken by valkey" in p for p in problems_of(mini_repo, twice))
    reserved = problems_of(mini_repo, GOOD_TILTFILE, reserved_ports=[19102])
    assert any("local port 19102 is already taken by the kind config" in p for p in reserved), reserved


@pytest.mark.unit
def test_a_read_only_root_filesystem_blocks_live_update(mini_repo: Path) -> None:
    problems = problems_of(mini_repo, GOOD_TILTFILE, mini_chart(read_only=True))
    assert any("readOnlyRootFilesystem is on" in p for p in problems), problems


@pytest.mark.unit
@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        # Tilt rejects an argument its builtin does not take; so do the stubs.
        (
            "new_name='valkey'",
            "new_name='valkey', port_forward=6379",
            "unexpected keyword argument 'port_forward'",
        ),
        # Go Starlark has no f-strings; the dialect here has them switched off too.
        ("SITE = '/opt", "X = f'{1}'\nSITE = '/opt", "f-strings"),
        (
            "        sync('libs/mesh",
            "        restart_container(),\n        sync('libs/mesh",
            "replaces restart_container",
        ),
        ("load('ext://restart_process'", "load('ext://restart_procezz'", "no stand-in for extension"),
    ],
)
def test_what_tilt_would_refuse_fails_evaluation(mini_repo: Path, old: str, new: str, error: str) -> None:
    with pytest.raises(starlark.StarlarkError, match=error):
        h.TiltStub(mini_repo).evaluate(broken(old, new))


@pytest.mark.unit
def test_the_tiltfile_evaluates_and_its_paths_and_images_hold() -> None:
    """Chart-free checks on the real Tiltfile: paths, syncs against each pyproject.toml's
    workspace dependencies, the Dockerfiles' venv path, ENTRYPOINT and ownership."""
    rec = h.evaluate()
    assert {img.ref for img in rec.images} == {f"voicemesh/{key}" for key in h.SERVICE_KEYS}
    assert rec.loads == ["ext://restart_process"]
    problems = h.check(rec, None)
    assert not problems, "\n".join(problems)


# -- integration: the real Tiltfile against the real chart and the real builds ----------------


def kind_host_ports() -> list[int]:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    return [
        m["hostPort"]
        for n in config["nodes"]
        for m in n.get("extraPortMappings", [])
        if m.get("protocol", "TCP") == "TCP"
    ]


@pytest.mark.integration
def test_the_tiltfile_matches_the_chart_helm_renders() -> None:
    rec = h.evaluate()
    assert len(rec.helm) == 1 and rec.helm[0].values, "deploy the chart once, with its dev values"
    rendered = h.render_chart(rec.helm[0])
    problems = h.check(rec, rendered, reserved_ports=kind_host_ports())
    assert not problems, "\n".join(problems)
    # Every workload is a named, grouped Tilt resource, not left in "uncategorized".
    workloads = {o["metadata"]["name"] for o in rendered if o["kind"] in h.WORKLOAD_KINDS}
    assert {r.workload for r in rec.resources} == workloads
    assert all(r.labels for r in rec.resources)


@pytest.mark.integration
def test_the_monitoring_flag_adds_servicemonitors_and_rules() -> None:
    rec = h.evaluate(args={"monitoring": True})
    rendered = h.render_chart(rec.helm[0])
    kinds = [o["kind"] for o in rendered]
    assert kinds.count("ServiceMonitor") >= 1 and "PrometheusRule" in kinds
    for obj in (o for o in rendered if o["kind"] in ("ServiceMonitor", "PrometheusRule")):
        assert obj["metadata"]["labels"].get("release") == "kube-prometheus-stack"
    problems = h.check(rec, rendered, reserved_ports=kind_host_ports())
    assert not problems, "\n".join(problems)
    assert [lr.name for lr in rec.local_resources] == ["grafana"]


def installed_modules(img: Any, workdir: Path) -> tuple[str, set[str]]:
    """Build `img`'s venv as its Dockerfile's builder stage would from Tilt's context: the
    site-packages path the image uses, and the voicemesh modules installed there."""
    venv = h.images.build_builder_venv(img, h.REPO_ROOT, workdir, h.UV)
    dockerfile = (h.REPO_ROOT / img.dockerfile).read_text()
    site = h.images.venv_site_packages(h.images.dockerfile_instructions(dockerfile))
    built = venv / Path(site).relative_to(site.split("/lib/", 1)[0]) / "voicemesh"
    assert built.is_dir(), f"{img.ref}: the venv has no {site}/voicemesh"
    return site, {p.name for p in built.iterdir() if p.is_dir() and p.name != "__pycache__"}


@pytest.mark.integration
@pytest.mark.skipif(not h.UV.exists(), reason="uv is installed by `make env`")
def test_each_image_builds_from_its_tilt_context_and_installs_what_live_update_syncs(tmp_path: Path) -> None:
    """The Dockerfile's builder stage (its COPYs and `uv sync`s, offline from uv's cache) on the
    files Tilt sends (only= and .dockerignore): it builds, and the venv holds exactly the
    modules live update syncs, at the path it syncs them to."""
    for img in h.evaluate().images:
        workdir = tmp_path / img.ref.replace("/", "_")
        site, installed = installed_modules(img, workdir)
        synced = {s.args[1].rsplit("/", 1)[-1] for s in img.live_update if s.args[1].startswith(site + "/")}
        assert installed == synced, img.ref
        shutil.rmtree(workdir)


@pytest.mark.integration
@pytest.mark.skipif(not h.UV.exists(), reason="uv is installed by `make env`")
def test_a_context_without_a_lib_builds_an_image_without_it(tmp_path: Path) -> None:
    """Why the test above compares modules: leave libs/audio out of stt's only= and the build
    still succeeds (its pyproject.toml is there, so hatchling makes an empty wheel), but the
    image has no voicemesh.audio and stt would die at import."""
    stt = next(img for img in h.evaluate().images if img.ref == "voicemesh/stt")
    stt.only = [p for p in stt.only if p != "libs/audio"]
    _, installed = installed_modules(stt, tmp_path)
    assert "audio" not in installed and "stt" in installed
