"""Typed settings from the environment (12-factor): one frozen object per service.

Every variable is `VOICEMESH_<FIELD>` (e.g. `VOICEMESH_GRPC_PORT`). A service subclasses
`MeshSettings` with its own fields and builds it once in `main()` with `load_settings()`,
which turns validation errors into one line naming the variable.
"""

from __future__ import annotations

import os
import socket
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VOICEMESH_"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(ValueError):
    """The environment does not describe a valid configuration."""


class MeshSettings(BaseSettings):
    """What every voicemesh service needs to join the mesh."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    instance_id: str = Field(default_factory=_default_instance_id)
    region: str = "local"
    # Failure domain inside the region (on Kubernetes the node's topology zone); "" if none.
    zone: str = ""
    # Address the gRPC server binds; `advertise_host` is what others dial.
    bind_host: str = "127.0.0.1"
    advertise_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # mTLS between services (`mtls`): "on" needs `mesh_tls_dir` with this service's ca.crt,
    # tls.crt and tls.key; "off" runs the internal plane in the clear (a warning at start).
    mesh_tls: Literal["on", "off"] = "on"
    mesh_tls_dir: str = ""
    # A plaintext port that answers the gRPC health service only (for probes that cannot do
    # mTLS, such as the kubelet's `grpc:` probe); 0: none.
    health_port: int = Field(default=0, ge=0, le=65535)
    # 0 disables the /metrics endpoint.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:6379/0"
    nats_url: str = "nats://127.0.0.1:4222"
    # Sessions this instance accepts at once (the router never assigns more).
    capacity: int = Field(default=100, ge=1)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    registry_ttl_s: float = Field(default=6.0, gt=0)
    # How long a stopping instance waits for live sessions to end.
    drain_timeout_s: float = Field(default=15.0, ge=0)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    # Mask personal data (numbers, e-mails, cards, national ids, the caller's address) in
    # session events before they reach NATS. Off only for a local debugging session.
    events_redact: bool = True
    # How long the session-event stream keeps an event (transcripts included), in seconds.
    events_max_age_s: float = Field(default=3600.0, gt=0)
    # Create the stream (or set its max age) at start-up. Off where the stream is managed
    # elsewhere and this service's NATS user may only publish (the local mesh's).
    events_create_stream: bool = True

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, v: str) -> str:
        if not v.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError("must start with nats://, tls://, ws:// or wss://")
        return v

    @property
    def grpc_bind(self) -> str:
        return f"{self.bind_host}:{self.grpc_port}"

    def advertise_address(self, port: int | None = None) -> str:
        return f"{self.advertise_host}:{port if port is not None else self.grpc_port}"


S = TypeVar("S", bound=MeshSettings)


def load_settings(cls: type[S]) -> S:
    """Build `cls` from the environment; raise SettingsError naming every bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
