"""The whole mesh as local processes: Valkey, NATS JetStream and the five services.

Used by `voicemesh up`, the end-to-end tests and the benchmarks (with free ports there).
Children die with the supervisor (PR_SET_PDEATHSIG), so no process outlives it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import (
    LocalServer,
    ServerError,
    die_with_parent,
    free_port,
    nats_server,
    nats_url,
    port_open,
    redis_url,
    valkey_server,
)

from .state import MeshState, ServiceEndpoint

# (display name, python module), in start order.
SERVICES: tuple[tuple[str, str], ...] = (
    ("session-router", "voicemesh.router"),
    ("stt", "voicemesh.stt"),
    ("reasoning", "voicemesh.reasoning"),
    ("tts", "voicemesh.tts"),
    ("media-edge", "voicemesh.edge"),
)


class MeshError(RuntimeError):
    """The mesh cannot come up; the message says which part and why."""


@dataclass(frozen=True)
class MeshPorts:
    valkey: int = 16379
    nats: int = 14222
    grpc: dict[str, int] = field(
        default_factory=lambda: {
            "session-router": 50051,
            "stt": 50052,
            "reasoning": 50053,
            "tts": 50054,
            "media-edge": 50055,
        }
    )
    metrics: dict[str, int] = field(
        default_factory=lambda: {
            "session-router": 9101,
            "stt": 9102,
            "reasoning": 9103,
            "tts": 9104,
            "media-edge": 9105,
        }
    )
    ws: int = 8080

    @classmethod
    def free(cls) -> MeshPorts:
        names = [n for n, _ in SERVICES]
        return cls(
            valkey=free_port(),
            nats=free_port(),
            grpc={n: free_port() for n in names},
            metrics={n: free_port() for n in names},
            ws=free_port(),
        )

    def all(self) -> dict[str, int]:
        out = {"valkey": self.valkey, "nats": self.nats, "media-edge websocket": self.ws}
        out.update({f"{n} grpc": p for n, p in self.grpc.items()})
        out.update({f"{n} metrics": p for n, p in self.metrics.items()})
        return out


@dataclass
class ServiceProcess:
    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def last_error(self) -> str:
        """The service's own one-line reason for stopping, from its log."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            if "error:" in line:
                return line.strip()
        return lines[-1].strip() if lines else ""


class LocalMesh:
    def __init__(
        self,
        home: Path,
        agents_dir: Path,
        ports: MeshPorts | None = None,
        default_agent: str = "restaurant",
        token: str | None = None,
        extra_env: dict[str, str] | None = None,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.home = home
        self.agents_dir = agents_dir
        self.ports = ports or MeshPorts()
        self.default_agent = default_agent
        self.token = token or os.environ.get("VOICEMESH_EDGE_TOKEN") or secrets.token_urlsafe(24)
        # Even the local Twilio stream is authenticated: requests must carry its signature.
        self.twilio_auth_token = os.environ.get("VOICEMESH_TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
        self.extra_env = extra_env or {}
        self.log = log
        self.servers: list[LocalServer] = []
        self.services: list[ServiceProcess] = []

    @property
    def edge_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports.ws}/v1/call"

    @property
    def twilio_url(self) -> str:
        """The Twilio Media Streams endpoint; also the URL its requests are signed over."""
        return f"ws://127.0.0.1:{self.ports.ws}/v1/twilio"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.valkey}/0"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.nats}"

    def state(self) -> MeshState:
        return MeshState(
            supervisor_pid=os.getpid(),
            edge_url=self.edge_url,
            edge_token=self.token,
            redis_url=self.redis_url,
            nats_url=self.nats_url,
            twilio_url=self.twilio_url,
            twilio_auth_token=self.twilio_auth_token,
            services=[
                ServiceEndpoint(
                    name=s.name,
                    grpc_address=f"127.0.0.1:{self.ports.grpc[s.name]}",
                    metrics_url=f"http://127.0.0.1:{self.ports.metrics[s.name]}/metrics",
                    pid=s.proc.pid if s.proc else 0,
                )
                for s in self.services
            ],
        )

    def _env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                # onnxruntime (piper, Silero) would otherwise keep a device id and telemetry.
                "ORT_DISABLE_TELEMETRY": "1",
                "VOICEMESH_INSTANCE_ID": f"{name}-local",
                "VOICEMESH_GRPC_PORT": str(self.ports.grpc[name]),
                "VOICEMESH_METRICS_PORT": str(self.ports.metrics[name]),
                "VOICEMESH_REDIS_URL": self.redis_url,
                "VOICEMESH_NATS_URL": self.nats_url,
                "VOICEMESH_HEARTBEAT_INTERVAL_S": "1.0",
                "VOICEMESH_REGISTRY_TTL_S": "5.0",
            }
        )
        if name == "media-edge":
            env["VOICEMESH_WS_PORT"] = str(self.ports.ws)
            env["VOICEMESH_EDGE_TOKEN"] = self.token
            env["VOICEMESH_TWILIO_AUTH_TOKEN"] = self.twilio_auth_token
            env["VOICEMESH_TWILIO_STREAM_URL"] = self.twilio_url
            env["VOICEMESH_ROUTER_ADDRESS"] = f"127.0.0.1:{self.ports.grpc['session-router']}"
        if name == "reasoning":
            env["VOICEMESH_AGENTS_DIR"] = str(self.agents_dir)
            env["VOICEMESH_DEFAULT_AGENT"] = self.default_agent
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 180.0) -> None:
        """Start everything and wait until every service reports SERVING."""
        busy = [f"{what} ({port})" for what, port in self.ports.all().items() if port_open("127.0.0.1", port)]
        if busy:
            raise MeshError("ports already in use: " + ", ".join(busy) + " (is a mesh already running?)")
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            valkey = valkey_server(self.ports.valkey, log_path=logs / "valkey.log")
            valkey.start()
            self.servers.append(valkey)
            self.log(f"valkey      {redis_url(valkey)}")
            nats = nats_server(self.home / "nats", self.ports.nats, log_path=logs / "nats.log")
            nats.start()
            self.servers.append(nats)
            self.log(f"nats        {nats_url(nats)} (JetStream)")
        except ServerError as exc:
            self.stop()
            raise MeshError(str(exc)) from None
        for name, module in SERVICES:
            svc = ServiceProcess(name, module, self._env(name), logs / f"{name}.log")
            svc.start()
            self.services.append(svc)
        try:
            asyncio.run(self._wait_serving(timeout_s))
        except MeshError:
            self.stop()
            raise

    async def _wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = {s.name: s for s in self.services}
        while pending:
            for name, svc in list(pending.items()):
                code = svc.exited()
                if code is not None:
                    reason = svc.last_error() or f"exited with code {code}"
                    raise MeshError(f"{name} did not start: {reason} (log: {svc.log_path})")
                status = await check_health(f"127.0.0.1:{self.ports.grpc[name]}", timeout_s=0.5)
                if status == "SERVING":
                    self.log(f"{name:<11} 127.0.0.1:{self.ports.grpc[name]} serving")
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise MeshError(f"not serving after {timeout_s:.0f} s: {', '.join(pending)}")
            if pending:
                await asyncio.sleep(0.1)

    def crashed(self) -> list[tuple[str, str]]:
        """Services that exited by themselves, with their last words."""
        return [(s.name, s.last_error()) for s in self.services if s.exited() is not None]

    def stop(self, grace_s: float = 20.0) -> None:
        """Graceful: SIGTERM every service (they drain), then the servers."""
        for svc in reversed(self.services):
            if svc.proc is not None and svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for svc in self.services:
            if svc.proc is None:
                continue
            try:
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait()
        self.services.clear()
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def __enter__(self) -> LocalMesh:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
