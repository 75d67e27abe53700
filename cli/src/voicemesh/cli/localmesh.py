"""The whole mesh as local processes: Valkey, NATS JetStream and the five services.

Used by `voicemesh up`, the end-to-end tests and the benchmarks (with free ports there).
Children die with the supervisor (PR_SET_PDEATHSIG), so no process outlives it.

A service may run as several instances (replicas). With one, its instance id is
`<name>-local` and its log `logs/<name>.log`; with N, they are `<name>-local-<i>` and
`logs/<name>-<i>.log`, each with its own gRPC and metrics port. An instance keeps its ports
when it is restarted, so its registry address and state.json stay right.

Valkey and NATS take only the users of `voicemesh.mesh.access`, with passwords generated
here at each start: every service gets its own in its URLs (replicas share their service's),
state.json holds the `cli` reader's (for `voicemesh status`, `calls`, `events`), and the
session stream is created by the supervisor's `mesh` user with its retention
(VOICEMESH_EVENTS_MAX_AGE_S) before any service starts. The home, its logs, state and the
servers' config files are their owner's alone.

The services talk gRPC over mTLS with certificates issued here at each start by a new CA
whose key is never stored (`voicemesh.mesh.certs`): `<home>/tls/<identity>/` per service,
and `tls/cli` for the supervisor and the CLI's own calls (state.json names it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voicemesh.mesh.access import (
    CLI_USER,
    GRPC_IDENTITIES,
    MESH_USER,
    generate_passwords,
    nats_authorization,
    valkey_acl,
)
from voicemesh.mesh.certs import write_mesh_tls
from voicemesh.mesh.events import DEFAULT_MAX_AGE_S, connect_nats, ensure_stream
from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import (
    LocalServer,
    ServerError,
    free_port,
    nats_server,
    nats_url,
    open_private_log,
    port_open,
    private_child,
    redis_url,
    valkey_server,
)
from voicemesh.mesh.mtls import MeshTls
from voicemesh.mesh.urls import with_credentials

from .state import MeshState, ServiceEndpoint, private_dir
from .supervise import Exit

# (display name, python module), in start order.
SERVICES: tuple[tuple[str, str], ...] = (
    ("session-router", "voicemesh.router"),
    ("stt", "voicemesh.stt"),
    ("reasoning", "voicemesh.reasoning"),
    ("tts", "voicemesh.tts"),
    ("media-edge", "voicemesh.edge"),
)
SERVICE_NAMES: tuple[str, ...] = tuple(n for n, _ in SERVICES)
# Why a service runs as one instance only (the others take --replicas).
SINGLE_INSTANCE: dict[str, str] = {
    "media-edge": "it owns the one WebSocket port callers dial",
    "session-router": "the edge reaches it at one fixed address, not through the registry",
}
# Ports of a replica without its own entry in MeshPorts.replicas: the first one's + 100 per index.
REPLICA_PORT_STEP = 100


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
    sip: int = 5060  # UDP and TCP
    # (grpc, metrics) ports of a service's 2nd, 3rd, ... instance; `grpc`/`metrics` hold the first's.
    replicas: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    @classmethod
    def free(cls, replicas: Mapping[str, int] | None = None) -> MeshPorts:
        names = [n for n, _ in SERVICES]
        return cls(
            valkey=free_port(),
            nats=free_port(),
            grpc={n: free_port() for n in names},
            metrics={n: free_port() for n in names},
            ws=free_port(),
            sip=free_port(),
            replicas={
                n: tuple((free_port(), free_port()) for _ in range(count - 1))
                for n, count in (replicas or {}).items()
                if count > 1
            },
        )

    def instance(self, name: str, index: int) -> tuple[int, int]:
        """(grpc, metrics) ports of instance `index` (1-based) of service `name`."""
        if index == 1:
            return self.grpc[name], self.metrics[name]
        extra = self.replicas.get(name, ())
        if index - 2 < len(extra):
            return extra[index - 2]
        step = REPLICA_PORT_STEP * (index - 1)
        return self.grpc[name] + step, self.metrics[name] + step

    def all(self) -> dict[str, int]:
        out = {"valkey": self.valkey, "nats": self.nats, "media-edge websocket": self.ws}
        out.update({f"{n} grpc": p for n, p in self.grpc.items()})
        out.update({f"{n} metrics": p for n, p in self.metrics.items()})
        return out


@dataclass(frozen=True)
class Instance:
    """Where one instance of a service runs."""

    service: str
    module: str
    instance_id: str
    grpc_port: int
    metrics_port: int
    log_name: str


@dataclass
class ServiceProcess:
    """One instance of a service: started again with the same env (ports, instance id)."""

    name: str  # the service ("stt")
    module: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    instance_id: str = ""
    grpc_port: int = 0
    metrics_port: int = 0
    # Where this run's output begins in the (appended) log.
    log_offset: int = 0

    def __post_init__(self) -> None:
        self.instance_id = self.instance_id or self.env.get("VOICEMESH_INSTANCE_ID", self.name)
        self.grpc_port = self.grpc_port or int(self.env.get("VOICEMESH_GRPC_PORT", "0"))
        self.metrics_port = self.metrics_port or int(self.env.get("VOICEMESH_METRICS_PORT", "0"))

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        try:
            self.log_offset = self.log_path.stat().st_size
        except OSError:
            self.log_offset = 0
        with open_private_log(self.log_path) as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=private_child,
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_lines(self) -> list[str]:
        """This run's log lines (the file also holds earlier runs)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                return fh.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return []

    def last_error(self) -> str:
        """The service's own one-line reason for stopping, from this run's log."""
        lines = self.log_lines()
        for line in reversed(lines):
            if "error:" in line:
                return line.strip()
        return lines[-1].strip() if lines else ""

    def describe_exit(self, returncode: int) -> str:
        """'stt-local-1 was killed by SIGKILL' / '... exited with code 2: <its error line>'."""
        text = f"{self.instance_id} {Exit(returncode).describe()}"
        if returncode > 0:  # a failing exit usually said why, in its last lines
            words = self.last_error()
        else:  # a signal's victim (or a clean exit) wrote nothing useful, unless an error
            words = next((ln.strip() for ln in reversed(self.log_lines()) if "error:" in ln), "")
        return f"{text}: {words}" if words else text


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
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        self.home = home
        self.agents_dir = agents_dir
        self.ports = ports or MeshPorts()
        self.default_agent = default_agent
        self.token = token or os.environ.get("VOICEMESH_EDGE_TOKEN") or secrets.token_urlsafe(24)
        # Even the local Twilio stream is authenticated: requests must carry its signature.
        self.twilio_auth_token = os.environ.get("VOICEMESH_TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
        # What the edge signs browsers' call tokens with (`voicemesh token` asks it for one).
        self.call_token_secret = os.environ.get("VOICEMESH_CALL_TOKEN_SECRET") or secrets.token_urlsafe(32)
        self.extra_env = extra_env or {}
        # Valkey and NATS passwords, one per user, new at every start (never printed).
        self.passwords = generate_passwords()
        # How long the session stream keeps events; VOICEMESH_EVENTS_MAX_AGE_S, read at start.
        self.events_max_age_s = DEFAULT_MAX_AGE_S
        self.log = log
        self.replicas = check_replicas(replicas or {})
        self.servers: list[LocalServer] = []
        self.services: list[ServiceProcess] = []
        # Each identity's mTLS directory, and the supervisor's own (`cli`) credentials.
        self.tls_dirs: dict[str, Path] = {}
        self.tls: MeshTls | None = None

    @property
    def edge_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports.ws}/v1/call"

    @property
    def twilio_url(self) -> str:
        """The Twilio Media Streams endpoint; also the URL its requests are signed over."""
        return f"ws://127.0.0.1:{self.ports.ws}/v1/twilio"

    @property
    def sip_uri(self) -> str:
        """Where SIP callers reach the default agent (callers from 127.0.0.1 need no digest)."""
        return f"sip:{self.default_agent}@127.0.0.1:{self.ports.sip}"

    def redis_url_for(self, user: str) -> str:
        return with_credentials(f"redis://127.0.0.1:{self.ports.valkey}/0", user, self.passwords[user])

    def nats_url_for(self, user: str) -> str:
        return with_credentials(f"nats://127.0.0.1:{self.ports.nats}", user, self.passwords[user])

    @property
    def redis_url(self) -> str:
        """The `cli` reader's: the registry, read only."""
        return self.redis_url_for(CLI_USER)

    @property
    def nats_url(self) -> str:
        """The `cli` reader's: the session stream, read only."""
        return self.nats_url_for(CLI_USER)

    def state(self) -> MeshState:
        return MeshState(
            supervisor_pid=os.getpid(),
            edge_url=self.edge_url,
            edge_token=self.token,
            redis_url=self.redis_url,
            nats_url=self.nats_url,
            twilio_url=self.twilio_url,
            twilio_auth_token=self.twilio_auth_token,
            sip_uri=self.sip_uri,
            mesh_tls_dir=str(self.tls_dirs.get(CLI_USER, "")),
            services=[
                ServiceEndpoint(
                    name=s.name,
                    grpc_address=s.grpc_address,
                    metrics_url=f"http://127.0.0.1:{s.metrics_port}/metrics",
                    # 0 while the instance waits for its restart
                    pid=s.proc.pid if s.proc is not None and s.proc.poll() is None else 0,
                    instance_id=s.instance_id,
                )
                for s in self.services
            ],
        )

    def instances(self) -> list[Instance]:
        """Every instance of every service, in start order."""
        out = []
        for name, module in SERVICES:
            count = self.replicas.get(name, 1)
            for index in range(1, count + 1):
                grpc_port, metrics_port = self.ports.instance(name, index)
                suffix = "" if count == 1 else f"-{index}"
                out.append(
                    Instance(
                        name, module, f"{name}-local{suffix}", grpc_port, metrics_port, f"{name}{suffix}.log"
                    )
                )
        return out

    def _env(self, name: str, grpc_port: int, metrics_port: int, instance_id: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                # onnxruntime (piper, Silero) would otherwise keep a device id and telemetry.
                "ORT_DISABLE_TELEMETRY": "1",
                "VOICEMESH_INSTANCE_ID": instance_id,
                "VOICEMESH_GRPC_PORT": str(grpc_port),
                "VOICEMESH_METRICS_PORT": str(metrics_port),
                "VOICEMESH_REDIS_URL": self.redis_url_for(name),
                "VOICEMESH_NATS_URL": self.nats_url_for(name),
                # the supervisor made the stream; the service's NATS user may only publish
                "VOICEMESH_EVENTS_CREATE_STREAM": "false",
                "VOICEMESH_EVENTS_MAX_AGE_S": str(self.events_max_age_s),
                "VOICEMESH_HEARTBEAT_INTERVAL_S": "1.0",
                "VOICEMESH_REGISTRY_TTL_S": "5.0",
            }
        )
        if name in self.tls_dirs:  # issued by `start` (without, the service refuses to start)
            env["VOICEMESH_MESH_TLS_DIR"] = str(self.tls_dirs[name])
        if name == "media-edge":
            env["VOICEMESH_WS_PORT"] = str(self.ports.ws)
            env["VOICEMESH_EDGE_TOKEN"] = self.token
            env["VOICEMESH_TWILIO_AUTH_TOKEN"] = self.twilio_auth_token
            env["VOICEMESH_TWILIO_STREAM_URL"] = self.twilio_url
            env["VOICEMESH_SIP_PORT"] = str(self.ports.sip)
            env["VOICEMESH_CALL_TOKEN_SECRET"] = self.call_token_secret
            env["VOICEMESH_AGENTS_DIR"] = str(self.agents_dir)  # the softphone's agent list
            env["VOICEMESH_DEFAULT_AGENT"] = self.default_agent
            env["VOICEMESH_ROUTER_ADDRESS"] = f"127.0.0.1:{self.ports.grpc['session-router']}"
        if name == "reasoning":
            env["VOICEMESH_AGENTS_DIR"] = str(self.agents_dir)
            env["VOICEMESH_DEFAULT_AGENT"] = self.default_agent
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 180.0) -> None:
        """Start everything and wait until every service reports SERVING."""
        wanted = {
            "valkey": self.ports.valkey,
            "nats": self.ports.nats,
            "media-edge websocket": self.ports.ws,
            "media-edge sip": self.ports.sip,
        }
        for inst in self.instances():
            wanted[f"{inst.instance_id} grpc"] = inst.grpc_port
            wanted[f"{inst.instance_id} metrics"] = inst.metrics_port
        busy = [f"{what} ({port})" for what, port in wanted.items() if port_open("127.0.0.1", port)]
        if busy:
            raise MeshError("ports already in use: " + ", ".join(busy) + " (is a mesh already running?)")
        self.start_servers()
        self.issue_certificates()
        logs = self.home / "logs"
        for inst in self.instances():
            env = self._env(inst.service, inst.grpc_port, inst.metrics_port, inst.instance_id)
            svc = ServiceProcess(inst.service, inst.module, env, logs / inst.log_name)
            svc.start()
            self.services.append(svc)
        try:
            asyncio.run(self._wait_serving(timeout_s))
        except MeshError:
            self.stop()
            raise

    def start_servers(self) -> None:
        """Valkey and NATS with the mesh's users, and the session stream (`start` does this
        first; tests of the data stores alone call it by itself)."""
        try:
            self.events_max_age_s = events_max_age(self.extra_env)
        except ValueError as exc:
            raise MeshError(str(exc)) from None
        logs = self.home / "logs"
        private_dir(self.home)  # state, logs and the JetStream store: their owner's alone
        private_dir(logs)
        try:
            valkey = valkey_server(
                self.ports.valkey,
                log_path=logs / "valkey.log",
                acl=valkey_acl(self.passwords),
                config_path=self.home / "valkey.conf",
            )
            valkey.start()
            self.servers.append(valkey)
            self.log(f"valkey      {redis_url(valkey)} (a user per service)")
            nats = nats_server(
                private_dir(self.home / "nats"),
                self.ports.nats,
                log_path=logs / "nats.log",
                authorization=nats_authorization(self.passwords),
                config_path=self.home / "nats.conf",
            )
            nats.start()
            self.servers.append(nats)
            asyncio.run(self._make_stream())
            self.log(
                f"nats        {nats_url(nats)} (JetStream, a user per service, events kept {self.events_max_age_s:g} s)"
            )
        except (ServerError, ConnectionError) as exc:
            self.stop()
            raise MeshError(str(exc)) from None

    def issue_certificates(self) -> None:
        """A fresh CA and a certificate per service and for the CLI (`start` does this)."""
        now = dt.datetime.now(dt.UTC)
        self.tls_dirs = write_mesh_tls(private_dir(self.home / "tls"), GRPC_IDENTITIES, now)
        self.tls = MeshTls.load(self.tls_dirs[CLI_USER], now)

    def tls_as(self, identity: str) -> MeshTls:
        """The credentials of one of this mesh's identities (tests act as the edge with it)."""
        return MeshTls.load(self.tls_dirs[identity], dt.datetime.now(dt.UTC))

    def check_health(self, svc: ServiceProcess, timeout_s: float = 0.5) -> Awaitable[str]:
        """The health of one of this mesh's instances, asked as the CLI."""
        return check_health(svc.grpc_address, timeout_s=timeout_s, tls=self.tls, peer=svc.name)

    async def _make_stream(self) -> None:
        """The session stream, with its retention, made by the one user allowed to."""
        nc = await connect_nats(self.nats_url_for(MESH_USER))
        try:
            await ensure_stream(nc.jetstream(), self.events_max_age_s)
        except Exception as exc:
            raise ConnectionError(f"nats: cannot create the session stream: {exc}") from None
        finally:
            await nc.close()

    async def _wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = {s.instance_id: s for s in self.services}
        while pending:
            for instance_id, svc in list(pending.items()):
                code = svc.exited()
                if code is not None:
                    reason = svc.last_error() or Exit(code).describe()
                    raise MeshError(f"{svc.name} did not start: {reason} (log: {svc.log_path})")
                status = await self.check_health(svc)
                if status == "SERVING":
                    label = svc.name if self.replicas.get(svc.name, 1) == 1 else instance_id
                    self.log(f"{label:<11} {svc.grpc_address} serving")
                    del pending[instance_id]
            if pending and time.monotonic() > deadline:
                raise MeshError(f"not serving after {timeout_s:.0f} s: {', '.join(pending)}")
            if pending:
                await asyncio.sleep(0.1)

    def crashed(self) -> list[tuple[str, str]]:
        """Services that exited by themselves, with their last words."""
        return [(s.name, s.last_error()) for s in self.services if s.exited() is not None]

    def reap(self) -> list[tuple[ServiceProcess, int]]:
        """Instances that exited since the last call, with their return codes (each once)."""
        out = []
        for svc in self.services:
            if svc.proc is not None and svc.proc.poll() is not None:
                out.append((svc, svc.proc.returncode))
                svc.proc = None
        return out

    def restart(self, instance_id: str) -> ServiceProcess:
        """Start a reaped instance again, on the same ports with the same instance id."""
        for svc in self.services:
            if svc.instance_id == instance_id:
                if svc.proc is not None and svc.proc.poll() is None:
                    raise MeshError(f"{instance_id} is still running")
                svc.start()
                return svc
        raise MeshError(f"no instance {instance_id!r} in this mesh")

    def dead_servers(self) -> list[tuple[str, int]]:
        """Valkey or NATS processes that exited, with their return codes."""
        return [
            (server.name, server.proc.returncode)
            for server in self.servers
            if server.proc is not None and server.proc.poll() is not None
        ]

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


def events_max_age(extra_env: Mapping[str, str]) -> float:
    """VOICEMESH_EVENTS_MAX_AGE_S (from `extra_env`, else the environment), default an hour."""
    text = extra_env.get("VOICEMESH_EVENTS_MAX_AGE_S") or os.environ.get("VOICEMESH_EVENTS_MAX_AGE_S")
    if not text:
        return DEFAULT_MAX_AGE_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"VOICEMESH_EVENTS_MAX_AGE_S: {text!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"VOICEMESH_EVENTS_MAX_AGE_S: must be > 0, got {text}")
    return value


def check_replicas(replicas: Mapping[str, int]) -> dict[str, int]:
    """The replica counts, checked: known services, at least 1, >1 only where it can work."""
    out: dict[str, int] = {}
    for name, count in replicas.items():
        if name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {name!r} (services: {', '.join(SERVICE_NAMES)})")
        if count < 1:
            raise ValueError(f"{name}={count}: a service needs at least 1 instance")
        if count > 1 and name in SINGLE_INSTANCE:
            raise ValueError(f"{name} runs as one instance: {SINGLE_INSTANCE[name]}")
        out[name] = count
    return out


def parse_replicas(text: str) -> dict[str, int]:
    """`stt=2,reasoning=2` -> {"stt": 2, "reasoning": 2}; ValueError naming what is wrong."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{item.strip()!r} is not NAME=N")
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"{item.strip()!r}: {value.strip()!r} is not a whole number") from None
        if name in counts:
            raise ValueError(f"{name} is given twice")
        counts[name] = count
    return check_replicas(counts)
