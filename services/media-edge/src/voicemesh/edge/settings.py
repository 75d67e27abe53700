"""media-edge settings (VOICEMESH_* environment variables)."""

from __future__ import annotations

from pydantic import Field, field_validator

from voicemesh.mesh.settings import MeshSettings


class EdgeSettings(MeshSettings):
    grpc_port: int = Field(default=50055, ge=0, le=65535)
    # The native WebSocket media stream.
    ws_host: str = "127.0.0.1"
    ws_port: int = Field(default=8080, ge=0, le=65535)
    # Bearer token callers must present. Required: every ingress authenticates.
    edge_token: str = ""
    # The Twilio Media Streams stream (/v1/twilio on the same port): the account's auth
    # token, and the public URL Twilio connects to (the URL its X-Twilio-Signature signs).
    # Without a token the stream is refused: every ingress authenticates.
    twilio_auth_token: str = ""
    twilio_stream_url: str = ""
    router_address: str = "127.0.0.1:50051"
    # How often a live call renews its reservations with the session-router: keep it well
    # below the router's VOICEMESH_ROUTER_LEASE_S (120 s by default), which is how long a
    # crashed edge's calls hold their slots.
    router_renew_s: float = Field(default=30.0, gt=0)
    # A call whose caller side sends no audio for this long ends with reason "no_media"
    # (checked four times per timeout, so within 1.25x of it; a live call streams a frame
    # every 20 ms; a held call is exempt).
    media_timeout_s: float = Field(default=10.0, gt=0)
    # Calls one edge process takes at once (VOICEMESH_CAPACITY: also what it registers). One
    # process is one event loop on one core; on 2 cores (bench/edge_media.py,
    # docs/performance.md) it held 80 native and 40 Twilio calls without falling behind, so
    # 40 by default. Past it, calls are refused cleanly.
    capacity: int = Field(default=40, ge=1)

    @field_validator("twilio_stream_url")
    @classmethod
    def _stream_url(cls, v: str) -> str:
        if v and not v.startswith(("ws://", "wss://")):
            raise ValueError("must be the stream's ws:// or wss:// URL, as written in the TwiML")
        return v

    @field_validator("edge_token")
    @classmethod
    def _token_set(cls, v: str) -> str:
        if len(v) < 16:
            raise ValueError("must be set to a secret of at least 16 characters")
        return v
