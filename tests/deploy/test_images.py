"""The container images: what each Dockerfile promises, read statically (unit), and the real
proof (opt-in): scripts/image_proof.sh builds them with buildah from a local base and runs
them with podman, non-root on a read-only root, until their health checks answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The contract: service key -> (module run by `python -m voicemesh.<module>`, gRPC port).
SERVICES = {
    "session-router": ("router", 50051),
    "stt": ("stt", 50052),
    "reasoning": ("reasoning", 50053),
    "tts": ("tts", 50054),
    "media-edge": ("edge", 50055),
}
METRICS_PORT = 9464
EDGE_HTTP_PORT = 8080
USER = "10001:10001"
VENV = "/opt/voicemesh/venv"
SHARED_START = "# ---- shared by every image"
SHARED_END = "# ---- this image ----"


def dockerfile_path(key: str) -> Path:
    return REPO_ROOT / ("cli/Dockerfile" if key == "cli" else f"services/{key}/Dockerfile")


IMAGES = [*SERVICES, "cli"]


# -- a small Dockerfile reader ----------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    op: str
    flags: dict[str, str]
    rest: str  # after the flags

    @property
    def words(self) -> list[str]:
        return self.rest.split()


@dataclass(frozen=True)
class Dockerfile:
    args: dict[str, str]  # ARG defaults, global and per stage
    stages: list[list[Instruction]]  # stage 0 holds the instructions before the first FROM

    @property
    def final(self) -> list[Instruction]:
        return self.stages[-1]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), text)

    def env(self, stage: list[Instruction]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in (i for i in stage if i.op == "ENV"):
            for name, value in re.findall(r'(\w+)=("[^"]*"|\S+)', i.rest):
                out[name] = value.strip('"')
        return out


def parse(text: str) -> Dockerfile:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[list[Instruction]] = [[]]
    args: dict[str, str] = {}
    for line in (ln.strip() for ln in joined.splitlines()):
        if not line:
            continue
        op, _, rest = line.partition(" ")
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        instruction = Instruction(op.upper(), flags, rest.strip())
        if instruction.op == "FROM":
            stages.append([])
        if instruction.op == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        stages[-1].append(instruction)
    return Dockerfile(args, stages)


@cache
def dockerfile(key: str) -> Dockerfile:
    return parse(dockerfile_path(key).read_text())


# -- .dockerignore, with Docker's rules: last matching pattern wins, a path is excluded when it
# or a parent folder matches, `**` spans folders, `*` and `?` do not cross "/". -----------------


def _pattern(glob: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + "$")


@cache
def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, _pattern(os.path.normpath(line.lstrip("!").strip()).lstrip("/"))))
    return rules


def in_context(rel: str) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for keep, rx in dockerignore():
        if any(rx.match(p) for p in prefixes):
            included = keep
    return included


# -- static checks ----------------------------------------------------------------------------


@pytest.mark.unit
def test_every_service_folder_has_a_dockerfile_and_images_sh_builds_each() -> None:
    folders = sorted(p.name for p in (REPO_ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
    assert folders == sorted(SERVICES)
    missing = [
        str(dockerfile_path(k).relative_to(REPO_ROOT)) for k in IMAGES if not dockerfile_path(k).is_file()
    ]
    assert missing == []
    script = (REPO_ROOT / "scripts/images.sh").read_text()
    listed = re.search(r"^ALL_KEYS=\((.*)\)$", script, re.M)
    assert listed and sorted(listed.group(1).split()) == sorted(IMAGES)


@pytest.mark.unit
@pytest.mark.parametrize("key", IMAGES)
def test_both_stages_start_from_one_pinned_slim_python(key: str) -> None:
    df = dockerfile(key)
    froms = [df.expand(stage[0].words[0]) for stage in df.stages[1:]]
    assert len(froms) == 2, "a builder stage and the final stage"
    assert froms[0] == froms[1], "the final stage must run the interpreter the venv was built with"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", froms[0]), froms[0]


@pytest.mark.unit
@pytest.mark.parametrize("key", IMAGES)
def test_the_final_stage_runs_as_user_10001_with_a_read_only_friendly_env(key: str) -> None:
    df = dockerfile(key)
    users = [i.rest for i in df.final if i.op == "USER"]
    assert users[-1:] == [USER]
    env = df.env(df.final)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HOME"] == "/tmp", (
        "caches (onnxruntime, huggingface) write under HOME: /tmp is the writable mount"
    )
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert [i.rest for i in df.final if i.op == "WORKDIR"][-1:] == ["/app"]
    assert env["ORT_DISABLE_TELEMETRY"] == "1", (
        "onnxruntime >= 1.29 writes a device id under HOME and uploads"
    )
    copies = [i for i in df.final if i.op == "COPY" and i.flags.get("from") == "builder"]
    assert [c.words for c in copies] == [[VENV, VENV]]
    # The service cannot rewrite its own code: root's unless a dev build hands it over.
    assert df.expand(copies[0].flags.get("chown", "0:0")) == "0:0"


@pytest.mark.unit
@pytest.mark.parametrize("key", IMAGES)
def test_the_builder_installs_only_this_package_from_the_lock_with_the_pinned_uv(key: str) -> None:
    df = dockerfile(key)
    builder = df.stages[1]
    package = df.args["PACKAGE"]
    pyproject = REPO_ROOT / ("cli" if key == "cli" else f"services/{key}") / "pyproject.toml"
    assert package == tomllib.loads(pyproject.read_text())["project"]["name"]
    syncs = [i.rest.split("uv sync", 1)[1].split() for i in builder if i.op == "RUN" and "uv sync" in i.rest]
    assert len(syncs) == 2, "dependencies first (cached by uv.lock), then the workspace packages"
    deps, workspace = (set(s) for s in syncs)
    assert {"--no-dev", "--no-install-workspace", "--frozen"} <= deps
    assert {"--no-dev", "--no-editable", "--locked"} <= workspace
    assert all('"${PACKAGE}"' in s and s[s.index('"${PACKAGE}"') - 1] == "--package" for s in syncs)
    assert df.env(builder)["UV_PROJECT_ENVIRONMENT"] == VENV
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert makefile_uv and df.args["UV_VERSION"] == makefile_uv.group(1)


@pytest.mark.unit
@pytest.mark.parametrize("key", list(SERVICES))
def test_each_service_image_runs_its_module_exposes_its_ports_and_probes_its_health(key: str) -> None:
    module, port = SERVICES[key]
    df = dockerfile(key)
    entrypoints = [json.loads(i.rest) for i in df.final if i.op == "ENTRYPOINT"]
    assert entrypoints[-1:] == [["python", "-m", f"voicemesh.{module}"]]
    assert (REPO_ROOT / f"services/{key}/src/voicemesh/{module}/__main__.py").is_file()
    env = df.env(df.final)
    assert env["VOICEMESH_GRPC_PORT"] == str(port)
    assert env["VOICEMESH_METRICS_PORT"] == str(METRICS_PORT)
    assert env["VOICEMESH_BIND_HOST"] == "0.0.0.0"
    exposed = {w for i in df.final if i.op == "EXPOSE" for w in i.words}
    expected = {str(port), str(METRICS_PORT)} | ({str(EDGE_HTTP_PORT)} if key == "media-edge" else set())
    assert exposed == expected
    checks = [i for i in df.final if i.op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert checks[0].rest == 'CMD python -m voicemesh.mesh.probe health "127.0.0.1:${VOICEMESH_GRPC_PORT}"'


@pytest.mark.unit
def test_the_edge_listens_for_callers_reasoning_carries_the_agents_and_the_cli_its_recordings() -> None:
    edge = dockerfile("media-edge").env(dockerfile("media-edge").final)
    assert (edge["VOICEMESH_WS_HOST"], edge["VOICEMESH_WS_PORT"]) == ("0.0.0.0", str(EDGE_HTTP_PORT))

    reasoning = dockerfile("reasoning")
    assert reasoning.env(reasoning.final)["VOICEMESH_AGENTS_DIR"] == "/app/agents"
    assert [i.words[-2:] for i in reasoning.final if i.op == "COPY" and "from" not in i.flags] == [
        ["agents", "/app/agents"]
    ]

    cli = dockerfile("cli")
    assert [json.loads(i.rest) for i in cli.final if i.op == "ENTRYPOINT"] == [["voicemesh"]]
    assert not [i for i in cli.final if i.op in ("HEALTHCHECK", "EXPOSE")]
    copies = [i.words for i in cli.final if i.op == "COPY" and "from" not in i.flags]
    assert copies == [["tests/e2e/fixtures/caller_*.wav", "/app/fixtures/"]]
    assert cli.env(cli.final)["VOICEMESH_HOME"].startswith("/tmp/")


@pytest.mark.unit
@pytest.mark.parametrize("key", IMAGES)
def test_every_copy_source_is_in_the_build_context(key: str) -> None:
    df = dockerfile(key)
    for stage in df.stages[1:]:
        for copy in (i for i in stage if i.op in ("COPY", "ADD") and "from" not in i.flags):
            for source in copy.words[:-1]:
                matches = sorted(REPO_ROOT.glob(source))
                assert matches, f"{key}: COPY {source}: nothing in the repository"
                files = [f for m in matches for f in ([m] if m.is_file() else m.rglob("*")) if f.is_file()]
                sent = [f for f in files if in_context(f.relative_to(REPO_ROOT).as_posix())]
                assert sent, f"{key}: COPY {source}: .dockerignore leaves nothing of it in the context"


@pytest.mark.unit
@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".tools/uv/bin/uv",
        ".voicemesh/state.json",
        ".git/HEAD",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "libs/mesh/src/voicemesh/mesh/__pycache__/probe.cpython-311.pyc",
        "services/stt/.pytest_cache/README.md",
        "services/stt/tests/test_engine.py",
        "tests/e2e/test_call.py",
        "deploy/helm/voicemesh/values.yaml",
        "services/stt/Dockerfile",
    ],
)
def test_dockerignore_keeps_environments_caches_and_tests_out(path: str) -> None:
    assert not in_context(path)


@pytest.mark.unit
@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "uv.lock",
        "libs/mesh/src/voicemesh/mesh/probe.py",
        "services/session-router/src/voicemesh/router/assign.lua",
        "cli/pyproject.toml",
        "agents/restaurant.yaml",
        "tests/e2e/fixtures/caller_yes.wav",
    ],
)
def test_dockerignore_keeps_what_the_images_are_built_from(path: str) -> None:
    assert in_context(path)


@pytest.mark.unit
def test_the_shared_part_is_the_same_in_every_dockerfile() -> None:
    """One pattern, six copies (a Dockerfile cannot include another): a fix in one is a fix in all."""

    def shared(key: str) -> str:
        text = dockerfile_path(key).read_text()
        assert text.count(SHARED_START) == 1 and text.count(SHARED_END) == 1, key
        return text[text.index(SHARED_START) : text.index(SHARED_END)]

    reference = shared("stt")
    differ = [key for key in IMAGES if shared(key) != reference]
    assert differ == [], f"the shared part differs from services/stt/Dockerfile's in: {differ}"


# -- the real proof (opt-in: minutes, root, buildah/podman/debootstrap, PyPI) -------------------


@pytest.mark.integration
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    os.environ.get("VOICEMESH_IMAGE_PROOF") != "1",
    reason="builds images with buildah and runs them with podman (minutes, as root): set "
    "VOICEMESH_IMAGE_PROOF=1 to run it (VOICEMESH_IMAGE_PROOF_IMAGES='stt tts' or 'all' for more)",
)
def test_images_build_with_buildah_and_answer_their_health_check_under_podman() -> None:
    keys = os.environ.get("VOICEMESH_IMAGE_PROOF_IMAGES", "stt").split()
    done = subprocess.run(
        [str(REPO_ROOT / "scripts/image_proof.sh"), *keys],
        capture_output=True,
        text=True,
        timeout=3500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    services = list(SERVICES) if keys == ["all"] else [k for k in keys if k in SERVICES]
    for key in services:
        assert re.search(rf"^image_proof: {re.escape(key)} until SERVING +[\d.]+ s$", done.stderr, re.M), key
        assert re.search(rf"^image_proof: drain {re.escape(key)} +[\d.]+ s$", done.stderr, re.M), key
