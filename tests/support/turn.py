"""A real TURN server for tests: Debian's coturn (`turnserver`) on loopback, on free ports,
with either one static user (long-term credentials) or the TURN REST API's shared secret
(`use-auth-secret`), and its log in a file the test reads back (allocations, channels).

    with TurnServer.start_in(tmp_path, secret="...") as server:
        ice = server.ice_servers()   # for VOICEMESH_WEBRTC_ICE_SERVERS, no username: minted
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from voicemesh.mesh.localservers import LocalServer, free_port

HOST = "127.0.0.1"
REALM = "voicemesh.test"
RELAY_PORTS = 16  # relay endpoints a test may hold at once (one per allocation)


def need_coturn() -> str:
    found = shutil.which("turnserver")
    if found is None:
        pytest.fail("coturn is missing: `make tools` installs Debian's coturn (turnserver)")
    return found


def relay_range() -> tuple[int, int]:
    """A small UDP range for relay endpoints, starting at a port free right now."""
    while True:
        low = free_port(HOST)
        if low + RELAY_PORTS <= 65535:
            return low, low + RELAY_PORTS - 1


@dataclass
class TurnServer:
    workdir: Path
    secret: str = field(default="", repr=False)  # use-auth-secret with this static-auth-secret
    user: tuple[str, str] | None = field(default=None, repr=False)  # else one long-term user
    port: int = 0
    relay_ports: tuple[int, int] = (0, 0)
    server: LocalServer | None = None

    @classmethod
    def start_in(
        cls, workdir: Path, *, secret: str = "", user: tuple[str, str] | None = None, timeout_s: float = 10.0
    ) -> TurnServer:
        if bool(secret) == bool(user):
            raise ValueError("a TURN server here takes either a secret or a user, not both or neither")
        server = cls(workdir, secret, user, free_port(HOST), relay_range())
        server.start(timeout_s)
        return server

    @property
    def log_path(self) -> Path:
        return self.workdir / "turnserver.log"

    @property
    def url(self) -> str:
        return f"turn:{HOST}:{self.port}?transport=udp"

    def config(self) -> str:
        """coturn's configuration file (not /etc/turnserver.conf: nothing of the host's)."""
        lines = [
            f"listening-ip={HOST}",
            f"relay-ip={HOST}",
            f"listening-port={self.port}",
            f"min-port={self.relay_ports[0]}",
            f"max-port={self.relay_ports[1]}",
            f"realm={REALM}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-rfc5780",
            "no-stun-backward-compatibility",
            "no-multicast-peers",
            # the callers and edges of a test are all on 127.0.0.1, which coturn refuses as peers
            "allow-loopback-peers",
            "verbose",  # allocations, permissions and channel binds in the log
            f"log-file={self.log_path}",
            "simple-log",
            "no-stdout-log",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"userdb={self.workdir / 'turndb'}",
        ]
        if self.secret:
            lines += ["use-auth-secret", f"static-auth-secret={self.secret}"]
        else:
            assert self.user is not None
            lines += ["lt-cred-mech", f"user={self.user[0]}:{self.user[1]}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> None:
        binary = need_coturn()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "turnserver.conf"
        conf.write_text(self.config(), encoding="utf-8")
        conf.chmod(0o600)  # it holds the secret
        # answers on TCP too once it listens: that is the readiness check
        self.server = LocalServer("turnserver", [binary, "-c", str(conf)], HOST, self.port, self.workdir / "stdout.log")
        self.server.start(timeout_s)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> TurnServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ice_servers(self, *, with_user: bool = True) -> list[dict[str, object]]:
        """RTCConfiguration-shaped ICE servers naming this server: with the static user (if
        any and `with_user`), else without credentials (for an edge that mints them)."""
        entry: dict[str, object] = {"urls": [self.url]}
        if self.user is not None and with_user:
            entry.update(username=self.user[0], credential=self.user[1])
        return [entry]

    def ice_servers_json(self, **kwargs: bool) -> str:
        return json.dumps(self.ice_servers(**kwargs))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.log_text().splitlines() if rx.search(line)]

    @property
    def pid(self) -> int:
        return self.server.pid if self.server is not None else 0

    def running(self) -> bool:
        return self.server is not None and self.server.proc is not None and self.server.proc.poll() is None
