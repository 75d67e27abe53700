"""Where a locally running mesh is: written by `voicemesh up`, read by the other commands.

The file is `<home>/state.json` (home: $VOICEMESH_HOME, default ./.voicemesh), mode 0600
because it holds the edge's access token, the Twilio stream's auth token, and in `redis_url`
and `nats_url` the password of the mesh's read-only `cli` user (`voicemesh.mesh.access`):
show them with `voicemesh.mesh.urls.redact_url`, never as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voicemesh.mesh.mtls import MeshTls

STATE_FILE = "state.json"


class StateError(RuntimeError):
    """No mesh is running here, or its state file is unreadable."""


@dataclass(frozen=True)
class ServiceEndpoint:
    """One instance of a service (a service with replicas has several, in order)."""

    name: str
    grpc_address: str
    metrics_url: str
    pid: int = 0  # 0 while the instance waits to be restarted
    instance_id: str = ""  # as registered in Valkey: "stt-local", or "stt-local-2" with replicas


@dataclass(frozen=True)
class MeshState:
    supervisor_pid: int
    edge_url: str
    edge_token: str
    redis_url: str  # the `cli` reader's, password included
    nats_url: str  # the `cli` reader's, password included
    services: list[ServiceEndpoint] = field(default_factory=list)
    # The Twilio Media Streams endpoint and the auth token its requests are signed with.
    twilio_url: str = ""
    twilio_auth_token: str = ""
    # The SIP address of the default agent (UDP and TCP).
    sip_uri: str = ""
    # The operator's (`cli`) mTLS credentials for the services' gRPC ports; "": in the clear.
    mesh_tls_dir: str = ""

    def tls(self) -> MeshTls | None:
        """The operator's mTLS identity, checked (StateError when it cannot be used)."""
        if not self.mesh_tls_dir:
            return None
        try:
            return MeshTls.load(Path(self.mesh_tls_dir), dt.datetime.now(dt.UTC))
        except ValueError as exc:
            raise StateError(str(exc)) from None

    def service(self, name: str) -> ServiceEndpoint:
        """The service's first instance."""
        for svc in self.services:
            if svc.name == name:
                return svc
        raise StateError(f"the mesh state has no service named {name!r}")

    def instances(self, name: str) -> list[ServiceEndpoint]:
        """Every instance of service `name`, in order."""
        return [svc for svc in self.services if svc.name == name]


def default_home() -> Path:
    return Path(os.environ.get("VOICEMESH_HOME", ".voicemesh")).resolve()


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable only by its owner: a mesh's home holds the edge
    token, the logs and the JetStream store (caller transcripts)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_state(home: Path, state: MeshState) -> Path:
    private_dir(home)
    path = home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(state), fh, indent=2)
    tmp.replace(path)
    return path


def read_state(home: Path | None = None) -> MeshState:
    path = (home or default_home()) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateError(f"no local mesh found ({path} is missing): start one with `voicemesh up`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    try:
        services = [ServiceEndpoint(**s) for s in raw.pop("services", [])]
        return MeshState(services=services, **raw)
    except TypeError as exc:
        raise StateError(f"{path} is not a voicemesh state file: {exc}") from None


def clear_state(home: Path) -> None:
    (home / STATE_FILE).unlink(missing_ok=True)
