"""What the Tiltfile's images are built from: their Dockerfiles, build contexts and venvs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Instruction:
    stage: int
    op: str
    flags: dict[str, str]
    args: list[str]
    raw: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile (continuations joined), each with its stage number."""
    joined = re.sub(r"\\\n", " ", text)
    out: list[Instruction] = []
    stage = -1
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            stage += 1
        flags: dict[str, str] = {}
        words = rest.split()
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        out.append(Instruction(stage, op, flags, words, rest))
    return out


def dockerfile_args(instructions: list[Instruction]) -> dict[str, str]:
    return {k: v for i in instructions if i.op == "ARG" for k, _, v in [i.args[0].partition("=")] if v}


def dockerfile_entrypoint(instructions: list[Instruction]) -> list[str] | None:
    found = [i for i in instructions if i.op == "ENTRYPOINT"]
    return json.loads(found[-1].raw) if found else None


def venv_site_packages(instructions: list[Instruction]) -> str:
    """<UV_PROJECT_ENVIRONMENT>/lib/python<X.Y>/site-packages, from the Dockerfile's own ENV/ARG."""
    env = " ".join(i.raw for i in instructions if i.op == "ENV")
    venv = re.search(r"UV_PROJECT_ENVIRONMENT=(\S+)", env)
    base = dockerfile_args(instructions).get("PYTHON_IMAGE", "")
    version = re.search(r"python:(\d+\.\d+)", base)
    if not venv or not version:
        return ""
    return f"{venv.group(1)}/lib/python{version.group(1)}/site-packages"


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def owned_by_user(
    instructions: list[Instruction], uid: str, build_args: dict[str, str] | None = None
) -> list[str]:
    """Paths the final stage hands to `uid`: COPY --chown destinations and `chown` targets,
    with the stage's ARGs expanded (their defaults, or the build's --build-arg values)."""
    last = max(i.stage for i in instructions)
    values: dict[str, str] = {}
    paths: list[str] = []
    for i in (i for i in instructions if i.stage == last):
        if i.op == "ARG":
            name, _, default = i.args[0].partition("=")
            values[name] = (build_args or {}).get(name, default)
        if i.op in ("COPY", "ADD") and _expand(i.flags.get("chown", ""), values).split(":")[0] == uid:
            paths.append(i.args[-1].rstrip("/"))
        if i.op == "RUN":
            pattern = r"chown\s+(?:-\w+\s+)*" + re.escape(uid) + r"(?::\S+)?\s+([^&;|]+)"
            for m in re.finditer(pattern, _expand(i.raw, values)):
                paths += [p.rstrip("/") for p in m.group(1).split()]
    return paths


def _dockerignore_patterns(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    file = root / ".dockerignore"
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for line in file.read_text().splitlines() if file.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        rx = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        patterns.append((include, re.compile(rx + "$")))
    return patterns


def build_context(img: Any, root: Path) -> list[str]:
    """The files Tilt sends for `img`: under its only= paths, minus what .dockerignore drops."""
    patterns = _dockerignore_patterns(root)
    base = root / img.context
    tops = [base / p for p in img.only] if img.only else [base]
    files = sorted({f for top in tops for f in ([top] if top.is_file() else top.rglob("*")) if f.is_file()})
    kept: list[str] = []
    for f in files:
        rel = f.relative_to(base).as_posix()
        prefixes = ["/".join(rel.split("/")[: n + 1]) for n in range(rel.count("/") + 1)]
        excluded = False
        for include, rx in patterns:
            if any(rx.match(p) for p in prefixes):
                excluded = not include
        if not excluded:
            kept.append(rel)
    return kept


def build_builder_venv(img: Any, root: Path, workdir: Path, uv: Path) -> Path:
    """Run the Dockerfile's builder stage (its COPYs and `uv sync`s) on Tilt's context, offline.

    Returns the venv. Raises with uv's message when the context lacks something the build needs.
    """
    instructions = dockerfile_instructions((root / img.dockerfile).read_text())
    args = dockerfile_args(instructions)
    context = build_context(img, root)
    src, venv = workdir / "src", workdir / "venv"  # the builder's WORKDIR and its venv
    src.mkdir(parents=True)
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_LINK_MODE": "hardlink",
        "UV_NO_PROGRESS": "1",
    }
    for i in (i for i in instructions if i.stage == 0):
        if i.op == "COPY" and "from" not in i.flags:
            *sources, dest = i.args
            into_dir = dest.endswith("/") or dest == "." or len(sources) > 1
            for source in (s.rstrip("/") for s in sources):
                for rel in (r for r in context if r == source or r.startswith(source + "/")):
                    if rel == source:
                        out = src / dest / Path(rel).name if into_dir else src / dest
                    else:
                        out = src / dest / rel[len(source) + 1 :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(root / img.context / rel, out)
        elif i.op == "RUN" and re.search(r"\buv sync\b", i.raw):
            words = i.raw.split("uv sync", 1)[1].split()
            words = [_expand(w, args).strip('"') for w in words]
            done = subprocess.run(
                [str(uv), "sync", *words, "--offline"],
                cwd=src,
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"{img.ref}: `uv sync {' '.join(words)}` failed: {done.stderr.strip()[-800:]}"
                )
    return venv


def workspace_modules(root: Path) -> dict[str, tuple[str, list[str]]]:
    """Workspace package name -> (its src/voicemesh/<module> folder, its workspace deps)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for pyproject in sorted(root.glob("*/*/pyproject.toml")) + sorted(root.glob("cli/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        pkg_dir = pyproject.parent / "src" / "voicemesh"
        modules = sorted(p for p in pkg_dir.iterdir() if p.is_dir()) if pkg_dir.is_dir() else []
        if len(modules) != 1:
            continue
        deps = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in project.get("dependencies", [])]
        found[project["name"]] = (str(modules[0].relative_to(root)), deps)
    return {
        name: (mod, [d for d in deps if d.startswith("voicemesh-")]) for name, (mod, deps) in found.items()
    }


def modules_of(package_dir: str, root: Path) -> set[str]:
    """The module folders a service image installs: its own and its workspace libs', transitively."""
    table = workspace_modules(root)
    by_dir = {mod.split("/src/", 1)[0]: name for name, (mod, _) in table.items()}
    todo, seen = [by_dir[package_dir]], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in table:
            continue
        seen.add(name)
        todo.extend(table[name][1])
    return {table[name][0] for name in seen}
