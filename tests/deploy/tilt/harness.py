"""Hold what a Tiltfile declares against the repository and the chart as real helm renders it.

`tiltstub` records the Tiltfile's calls; `check()` lists everything wrong with them, each
message naming the culprit. It is pure over (recording, rendered objects, repository): the
tests drive it with tiny Tiltfiles to prove each check can fail.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
HELM = REPO_ROOT / ".tools" / "k8s" / "helm4"
UV = REPO_ROOT / ".tools" / "uv" / "bin" / "uv"
CONTAINER_UID = "10001"  # the images' user (deploy contract)
SERVICE_KEYS = ("media-edge", "stt", "reasoning", "tts", "session-router")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
# Tilt drops what `helm template` renders from a chart's templates/tests/ (its helm() filter).
_HELM_TEST_SOURCE = re.compile(r"^# Source: .*/tests/", re.MULTILINE)


def _sibling(name: str) -> ModuleType:
    full = f"voicemesh_deploy_tilt_{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, HERE / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules[full]


tiltstub = _sibling("tiltstub")
images = _sibling("images")
TiltStub = tiltstub.TiltStub
Recording = tiltstub.Recording


def evaluate(args: dict[str, Any] | None = None, root: Path = REPO_ROOT) -> Any:
    """The repository's Tiltfile, evaluated; `args` as `tilt up -- --flag` would give them."""
    return tiltstub.evaluate_tiltfile(root / "Tiltfile", root, args)


# -- the chart, rendered as Tilt's helm() renders it ----------------------------------------


def render_chart(call: Any, root: Path = REPO_ROOT, extra_set: Iterable[str] = ()) -> list[dict[str, Any]]:
    """`helm template` with the Tiltfile's arguments, minus the chart's tests (as Tilt does)."""
    argv = [str(HELM), "template", call.name or "chart", call.chart]
    if call.namespace:
        argv += ["--namespace", call.namespace]
    for values in call.values:
        argv += ["--values", values]
    for item in [*call.set, *extra_set]:
        argv += ["--set", item]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"helm template failed: {done.stderr.strip()}")
    docs = [d for d in done.stdout.split("\n---\n") if not _HELM_TEST_SOURCE.search(d)]
    return [obj for doc in docs for obj in [yaml.safe_load(doc)] if isinstance(obj, dict)]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def image_repository(image: str) -> str:
    """'docker.io/voicemesh/stt:0.1.0@sha256:…' -> 'voicemesh/stt' (how Tilt matches refs)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _under(path: str, parents: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


# -- the checks ---------------------------------------------------------------------------


def check(
    rec: Any,
    rendered: list[dict[str, Any]] | None,
    root: Path = REPO_ROOT,
    reserved_ports: Iterable[int] = (),
) -> list[str]:
    """Everything wrong with what the Tiltfile declares. `rendered=None` skips the chart checks."""
    problems = _check_paths(rec, root)
    for img in rec.images:
        problems += _check_image(img, root)
    if rendered is not None:
        problems += _check_against_chart(rec, rendered, reserved_ports)
    return problems


def _check_paths(rec: Any, root: Path) -> list[str]:
    problems: list[str] = []

    def missing(rel: str) -> bool:
        return not (root / rel).exists()

    for img in rec.images:
        if not (root / img.context).is_dir():
            problems.append(f"{img.ref}: build context {img.context!r} is not a directory")
        if not (root / img.dockerfile).is_file():
            problems.append(f"{img.ref}: Dockerfile {img.dockerfile!r} does not exist")
        for step in img.live_update:
            paths = (
                [step.args[0]]
                if step.kind == "sync"
                else list(step.args)
                if step.kind == "fall_back_on"
                else []
            )
            paths += step.kwargs.get("trigger", [])
            problems += [f"{img.ref}: {step.kind} path {p!r} does not exist" for p in paths if missing(p)]
        problems += [f"{img.ref}: only= path {p!r} does not exist" for p in img.only if missing(p)]
    for call in rec.helm:
        if not (root / call.chart / "Chart.yaml").is_file():
            problems.append(f"helm(): {call.chart!r} is not a chart")
        problems += [f"helm(): values file {v!r} does not exist" for v in call.values if missing(v)]
    problems += [f"reads {p!r}, which does not exist" for p in rec.files_read if missing(p)]
    for lr in rec.local_resources:
        problems += [f"local_resource {lr.name}: dep {d!r} does not exist" for d in lr.deps if missing(d)]
    return problems


def _check_image(img: Any, root: Path) -> list[str]:
    """Live update puts each service's sources where its image imports them from, the image's
    user may write there, and the restart wrapper runs what the image would have run."""
    problems: list[str] = []
    kinds = [s.kind for s in img.live_update]
    order = {"fall_back_on": 0, "sync": 1, "run": 2}
    if [order.get(k, 1) for k in kinds] != sorted(order.get(k, 1) for k in kinds):
        problems.append(f"{img.ref}: live_update steps must run fall_back_on, then sync, then run")
    dockerfile = root / img.dockerfile
    if not dockerfile.is_file():
        return problems
    instructions = images.dockerfile_instructions(dockerfile.read_text())
    site = images.venv_site_packages(instructions)
    entrypoint = images.dockerfile_entrypoint(instructions)
    if img.entrypoint is not None and img.entrypoint != entrypoint:
        problems.append(f"{img.ref}: restarts {img.entrypoint}, but the image's ENTRYPOINT is {entrypoint}")
    copied = [src for i in instructions if i.op == "COPY" and "from" not in i.flags for src in i.args[:-1]]
    if img.only:
        problems += [
            f"{img.ref}: the Dockerfile copies {src!r}, which only= leaves out of the context"
            for src in copied
            if not any(_under(o, [src]) or _under(src, [o]) for o in img.only)
        ]

    owned = images.owned_by_user(instructions, CONTAINER_UID, img.build_args)
    targets = [s.args[1] for s in img.live_update if s.kind == "sync"]
    if img.restart_file:
        targets.append(img.restart_file.rsplit("/", 1)[0])
    unwritable = [t for t in targets if not _under(t, owned)]
    if unwritable:
        problems.append(
            f"{img.ref}: live update writes {', '.join(unwritable)}, which the image leaves "
            f"unwritable by user {CONTAINER_UID} (no COPY --chown / chown over it)"
        )

    package_syncs = [
        (s.args[0].rstrip("/"), s.args[1].rstrip("/"))
        for s in img.live_update
        if s.kind == "sync" and "/src/voicemesh/" in s.args[0]
    ]
    for local, remote in package_syncs:
        want = f"{site}/voicemesh/{local.rsplit('/', 1)[-1]}"
        if remote != want:
            problems.append(f"{img.ref}: syncs {local} to {remote}, but the image installs it at {want}")
    service_dir = next(
        (loc.split("/src/", 1)[0] for loc, _ in package_syncs if loc.startswith("services/")), ""
    )
    if not service_dir:
        problems.append(f"{img.ref}: live update syncs no service sources")
        return problems
    wanted = images.modules_of(service_dir, root)
    synced = {local for local, _ in package_syncs}
    problems += [f"{img.ref}: live update misses {m}" for m in sorted(wanted - synced)]
    problems += [f"{img.ref}: syncs {m}, which the image does not install" for m in sorted(synced - wanted)]
    return problems


def _check_against_chart(
    rec: Any, rendered: list[dict[str, Any]], reserved_ports: Iterable[int]
) -> list[str]:
    problems: list[str] = []
    workloads = {o["metadata"]["name"]: o for o in rendered if o.get("kind") in WORKLOAD_KINDS}

    # Resources name rendered workloads; dependencies name resources.
    configured = {r.workload for r in rec.resources}
    names = (
        {r.name for r in rec.resources}
        | (set(workloads) - configured)
        | {lr.name for lr in rec.local_resources}
    )
    problems += [
        f"k8s_resource({r.workload!r}): the chart renders no such workload"
        for r in rec.resources
        if r.workload not in workloads
    ]
    for owner, deps in [(r.name, r.resource_deps) for r in rec.resources] + [
        (lr.name, lr.resource_deps) for lr in rec.local_resources
    ]:
        problems += [
            f"{owner}: resource_deps names {d!r}, which is no resource" for d in deps if d not in names
        ]

    # Images built and images deployed are the same set, and live-updated containers can be written.
    runs = {image_repository(c["image"]): (name, c) for name, o in workloads.items() for c in containers(o)}
    built = {image_repository(img.ref): img for img in rec.images}
    problems += [
        f"image {ref!r} is built but no rendered workload runs it" for ref in sorted(set(built) - set(runs))
    ]
    problems += [
        f"{runs[ref][0]} runs {ref!r}, which the Tiltfile does not build"
        for ref in sorted(set(runs) - set(built))
        if ref.startswith("voicemesh/")
    ]
    for ref, img in built.items():
        if (
            ref in runs
            and img.live_update
            and runs[ref][1].get("securityContext", {}).get("readOnlyRootFilesystem")
        ):
            problems.append(
                f"{runs[ref][0]}: readOnlyRootFilesystem is on, so live update of {ref} cannot write"
            )

    # Port forwards: unique on the host, clear of reserved ports, aimed at declared ports.
    taken: dict[int, str] = {int(p): "the kind config's host ports" for p in reserved_ports}
    for r in rec.resources:
        declared = (
            {p["containerPort"] for c in containers(workloads[r.workload]) for p in c.get("ports", [])}
            if r.workload in workloads
            else set()
        )
        for pf in r.port_forwards:
            if pf.local in taken:
                problems.append(f"{r.name}: local port {pf.local} is already taken by {taken[pf.local]}")
            taken[pf.local] = r.name
            if r.workload in workloads and pf.container not in declared:
                problems.append(f"{r.name}: forwards to port {pf.container}, which no container declares")
    return problems
