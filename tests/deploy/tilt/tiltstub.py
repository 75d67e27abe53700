"""Tilt's builtins as recording Python stand-ins, and a Tiltfile evaluator on top of them.

Tilt runs its Tiltfile in Go Starlark; here it runs in Rust Starlark (starlark-pyo3) with the
extended dialect (top-level `for`/`if`, `struct`) minus what Go Starlark lacks (f-strings,
type annotations). Every builtin is a Python function with Tilt's own keyword names, so a
misspelt argument fails here as it would under Tilt, and every call is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import starlark as sl
import yaml

# -- what the Tiltfile declares ------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A live_update step: sync(local, remote), run(cmd, trigger), fall_back_on(files)…"""

    kind: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class PortForward:
    local: int
    container: int
    name: str = ""


@dataclass
class ImageBuild:
    ref: str
    context: str
    dockerfile: str
    live_update: list[Step]
    entrypoint: list[str] | None
    only: list[str]
    ignore: list[str]
    build_args: dict[str, str] = field(default_factory=dict)
    restart_file: str = ""


@dataclass
class HelmCall:
    chart: str
    name: str
    namespace: str
    values: list[str]
    set: list[str]


@dataclass
class Resource:
    workload: str
    name: str
    port_forwards: list[PortForward]
    resource_deps: list[str]
    labels: list[str]
    links: list[Any]


@dataclass
class LocalResource:
    name: str
    deps: list[str]
    resource_deps: list[str]


@dataclass
class Recording:
    images: list[ImageBuild] = field(default_factory=list)
    helm: list[HelmCall] = field(default_factory=list)
    yaml: list[Any] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    local_resources: list[LocalResource] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    allowed_contexts: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _port_forward(value: Any) -> PortForward:
    if isinstance(value, PortForward):
        return value
    if isinstance(value, int):
        return PortForward(value, value)
    parts = str(value).split(":")  # "LOCAL", "LOCAL:REMOTE" or "HOST:LOCAL:REMOTE"
    local = int(parts[-2]) if len(parts) >= 2 else int(parts[0])
    return PortForward(local, int(parts[-1]))


class TiltStub:
    """Tilt's builtins as recording Python functions; `evaluate()` runs one Tiltfile."""

    def __init__(
        self, root: Path, k8s_context: str = "kind-voicemesh", args: dict[str, Any] | None = None
    ) -> None:
        self.root = root
        self.k8s_context = k8s_context
        self.args = dict(args or {})  # what `tilt up -- --flag` would give config.parse()
        self.rec = Recording()

    # Image builds ------------------------------------------------------------------------
    def docker_build(
        self,
        ref: str,
        context: str,
        *,
        build_args: Any = None,
        dockerfile: str = "Dockerfile",
        dockerfile_contents: str = "",
        live_update: Any = None,
        match_in_env_vars: bool = False,
        ignore: Any = None,
        only: Any = None,
        entrypoint: Any = None,
        target: str = "",
        ssh: Any = None,
        network: str = "",
        secret: Any = None,
        extra_tag: Any = None,
        container_args: Any = None,
        cache_from: Any = None,
        pull: bool = False,
        platform: str = "",
        extra_hosts: Any = None,
    ) -> None:
        entry = _as_list(entrypoint) if not isinstance(entrypoint, str) else ["sh", "-c", entrypoint]
        self.rec.images.append(
            ImageBuild(
                ref,
                context,
                dockerfile,
                _as_list(live_update),
                entry or None,
                [str(p) for p in _as_list(only)],
                [str(p) for p in _as_list(ignore)],
                {str(k): str(v) for k, v in dict(build_args or {}).items()},
            )
        )

    def docker_build_with_restart(
        self,
        ref: str,
        context: str,
        entrypoint: Any,
        live_update: Any,
        *,
        base_suffix: str = "-base",
        restart_file: str = "/tmp/.restart-proc",
        trigger: Any = None,
        exit_policy: str = "restart",
        **kwargs: Any,
    ) -> None:
        """ext://restart_process: the image `ref` runs `entrypoint` under a restart wrapper and
        every live update ends by writing `restart_file`, which restarts it."""
        steps = _as_list(live_update)
        if not steps:
            raise ValueError("`docker_build_with_restart` requires at least one live_update step")
        if any(s.kind == "restart_container" for s in steps):
            raise ValueError("`docker_build_with_restart` replaces restart_container(); drop it")
        if exit_policy not in ("restart", "continue"):
            raise ValueError(f"exit_policy must be 'restart' or 'continue', not {exit_policy!r}")
        self.docker_build(ref, context, live_update=steps, entrypoint=entrypoint, **kwargs)
        self.rec.images[-1].restart_file = restart_file

    @staticmethod
    def sync(local_path: str, remote_path: str) -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(Step("sync", (local_path, remote_path), {}))

    @staticmethod
    def run(cmd: str, trigger: Any = None, *, echo_off: bool = False) -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(Step("run", (cmd,), {"trigger": _as_list(trigger)}))

    @staticmethod
    def fall_back_on(files: Any) -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(Step("fall_back_on", tuple(_as_list(files)), {}))

    @staticmethod
    def initial_sync() -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(Step("initial_sync", (), {}))

    @staticmethod
    def restart_container() -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(Step("restart_container", (), {}))

    # Kubernetes --------------------------------------------------------------------------
    def helm(
        self,
        paths: str,
        *,
        name: str = "",
        namespace: str = "",
        values: Any = None,
        set: Any = None,
        kube_version: str = "",
        skip_crds: bool = False,
    ) -> sl.OpaquePythonObject:
        call = HelmCall(
            paths, name, namespace, [str(v) for v in _as_list(values)], [str(s) for s in _as_list(set)]
        )
        self.rec.helm.append(call)
        return sl.OpaquePythonObject(call)

    def k8s_yaml(self, yaml: Any, *, allow_duplicates: bool = False) -> None:
        self.rec.yaml.append(yaml)

    def blob(self, contents: str) -> str:
        return contents

    def k8s_resource(
        self,
        workload: str = "",
        *,
        new_name: str = "",
        port_forwards: Any = None,
        extra_pod_selectors: Any = None,
        trigger_mode: Any = None,
        resource_deps: Any = None,
        objects: Any = None,
        auto_init: bool = True,
        labels: Any = None,
        links: Any = None,
        pod_readiness: str = "",
        discovery_strategy: str = "",
    ) -> None:
        self.rec.resources.append(
            Resource(
                workload,
                new_name or workload,
                [_port_forward(p) for p in _as_list(port_forwards)],
                [str(d) for d in _as_list(resource_deps)],
                [str(x) for x in _as_list(labels)],
                _as_list(links),
            )
        )

    @staticmethod
    def port_forward(
        local_port: int,
        container_port: int | None = None,
        *,
        name: str = "",
        link_path: str = "",
        host: str = "",
    ) -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(PortForward(local_port, container_port or local_port, name))

    @staticmethod
    def link(url: str, name: str = "") -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject((url, name))

    def local_resource(
        self,
        name: str,
        cmd: Any = "",
        *,
        deps: Any = None,
        trigger_mode: Any = None,
        resource_deps: Any = None,
        ignore: Any = None,
        auto_init: bool = True,
        serve_cmd: Any = "",
        labels: Any = None,
        links: Any = None,
        readiness_probe: Any = None,
        dir: str = "",
        serve_dir: str = "",
        env: Any = None,
        serve_env: Any = None,
        allow_parallel: bool = False,
    ) -> None:
        self.rec.local_resources.append(
            LocalResource(name, [str(d) for d in _as_list(deps)], [str(d) for d in _as_list(resource_deps)])
        )

    # Files and settings ------------------------------------------------------------------
    def read_yaml(self, path: str, default: Any = None) -> Any:
        self.rec.files_read.append(path)
        file = self.root / path
        if not file.exists() and default is not None:
            return default
        return yaml.safe_load(file.read_text())

    def read_file(self, path: str, default: Any = None) -> str:
        self.rec.files_read.append(path)
        file = self.root / path
        if not file.exists() and default is not None:
            return str(default)
        return file.read_text()

    def watch_file(self, path: str) -> None:
        self.rec.files_read.append(path)

    def update_settings(self, **kwargs: Any) -> None:
        self.rec.settings.update(kwargs)

    def allow_k8s_contexts(self, contexts: Any) -> None:
        self.rec.allowed_contexts.extend(str(c) for c in _as_list(contexts))

    def _k8s_context(self) -> str:
        return self.k8s_context

    def _os_path_exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def _config_parse(self) -> dict[str, Any]:
        return dict(self.args)

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    # Evaluation --------------------------------------------------------------------------
    def _builtins(self) -> dict[str, Callable[..., Any]]:
        names = [
            "docker_build",
            "sync",
            "run",
            "fall_back_on",
            "initial_sync",
            "restart_container",
            "helm",
            "k8s_yaml",
            "blob",
            "k8s_resource",
            "port_forward",
            "link",
            "local_resource",
            "read_yaml",
            "read_file",
            "watch_file",
            "update_settings",
            "allow_k8s_contexts",
        ]
        table: dict[str, Callable[..., Any]] = {n: getattr(self, n) for n in names}
        table |= {
            "k8s_context": self._k8s_context,
            "_os_path_exists": self._os_path_exists,
            "_config_parse": self._config_parse,
            "_noop": self._noop,
            "version_settings": self._noop,
            "default_registry": self._noop,
            "docker_prune_settings": self._noop,
            "secret_settings": self._noop,
            "ci_settings": self._noop,
        }
        return table

    _PRELUDE = (
        "os = struct(path=struct(exists=_os_path_exists), getenv=_noop, name='posix')\n"
        "config = struct(define_string=_noop, define_string_list=_noop, define_bool=_noop,\n"
        "                parse=_config_parse, tilt_subcommand='up')\n"
    )

    def _load(self, module_id: str) -> sl.FrozenModule:
        self.rec.loads.append(module_id)
        if module_id != "ext://restart_process":
            raise ValueError(f"no stand-in for extension {module_id!r}")
        module = sl.Module()
        module.add_callable("docker_build_with_restart", self.docker_build_with_restart)
        return module.freeze()

    def evaluate(self, source: str, filename: str = "Tiltfile") -> Recording:
        dialect = sl.Dialect.extended()
        dialect.enable_f_strings = False  # Go Starlark has none
        dialect.enable_types = sl.DialectTypes.DISABLE
        globals_ = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.Print])
        module = sl.Module()
        for name, fn in self._builtins().items():
            module.add_callable(name, fn)
        sl.eval(module, sl.parse("<tilt builtins>", self._PRELUDE, dialect), globals_)
        sl.eval(module, sl.parse(filename, source, dialect), globals_, sl.FileLoader(self._load))
        return self.rec


def evaluate_tiltfile(path: Path, root: Path, args: dict[str, Any] | None = None) -> Recording:
    """Run the Tiltfile at `path`; `args` is what `tilt up -- --flag` hands config.parse()."""
    return TiltStub(root, args=args).evaluate(path.read_text(), str(path.relative_to(root)))
