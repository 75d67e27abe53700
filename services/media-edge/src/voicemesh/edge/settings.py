"""media-edge settings (VOICEMESH_* environment variables)."""

from __future__ import annotations

import hashlib
import ipaddress

from aiortc import RTCIceServer
from pydantic import Field, ValidationInfo, field_validator

from voicemesh.mesh.settings import MeshSettings

from .sip.auth import SipAccess
from .sip.offer import SrtpPolicy
from .sip.transport import SipSettings
from .tokens import MIN_SECRET
from .webrtc.ice import (
    DEFAULT_TURN_TTL_S,
    IceConfig,
    IcePolicy,
    parse_ice_servers,
    relay_problem,
    turn_auth_problem,
)


def parse_users(text: str) -> dict[str, str]:
    """ "alice:secret,bob:other" -> {user: password}; ValueError naming the bad entry (never
    the password)."""
    users: dict[str, str] = {}
    for index, entry in enumerate(e.strip() for e in text.split(",")):
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"entry {index + 1} must be user:password")
        users[user.strip()] = password
    return users


def _ice_servers(info: ValidationInfo) -> list[RTCIceServer] | None:
    """The ICE servers validated so far; None when their own variable was refused (its error
    says enough)."""
    text = info.data.get("webrtc_ice_servers")
    return None if text is None else parse_ice_servers(text)


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
    # WebRTC (WHIP at /v1/whip on the same port) and the softphone page at /. Browsers and
    # apps present short-lived call tokens signed with this secret (POST /v1/tokens with the
    # edge token, or `voicemesh token`); without a secret every WebRTC request is refused.
    webrtc_enabled: bool = True
    call_token_secret: str = ""
    call_token_ttl_s: float = Field(default=300.0, gt=0, le=86400)
    # JSON list of {"urls", "username"?, "credential"?} (STUN/TURN for callers behind NAT),
    # as a browser's RTCConfiguration takes it; handed to the page too.
    webrtc_ice_servers: str = ""
    # "all": the edge offers host candidates too (and STUN/TURN ones if configured);
    # "relay": only TURN relay candidates, so every call's media goes through the TURN
    # server (an edge callers cannot reach directly, as in a Kubernetes pod). Needs a
    # turn:/turns: entry above. The page is told the same policy.
    webrtc_ice_policy: IcePolicy = Field(default=IcePolicy.ALL, validate_default=True)
    # The TURN REST API secret (coturn's `use-auth-secret` + `static-auth-secret`): turn:
    # entries above without a username get ephemeral credentials minted from it, fresh for
    # each call and each softphone config answer, valid for webrtc_turn_ttl_s. It must cover
    # the time from a page loading its config to its call starting; coturn 4.6 keeps
    # refreshing an allocation made in time past the expiry, but a TURN server that
    # re-checks it on refresh drops a call that outlasts it, hence 1 h by default.
    webrtc_turn_secret: str = Field(default="", repr=False, validate_default=True)
    webrtc_turn_ttl_s: float = Field(default=DEFAULT_TURN_TTL_S, ge=60, le=86400)
    # The agents the softphone page offers (the folder the reasoning service serves).
    agents_dir: str = ""
    default_agent: str = ""
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
    # The end-of-turn model (Smart Turn v3.2, fetched by `make env`): loaded at start-up when
    # enabled; agents whose `turn.smart_turn` is on then end a turn early when the caller's
    # utterance reads complete. Missing, the edge logs it once and ends turns on silence. The
    # file: this path, else .tools/models/ of the repository (the same variable the model's
    # library reads). A check that would wait behind other calls' checks longer than
    # smart_turn_max_wait_ms is skipped (counted): that turn ends on silence.
    smart_turn_enabled: bool = True
    smart_turn_model: str = ""
    smart_turn_max_wait_ms: int = Field(default=100, ge=0, le=1000)
    # SIP (UDP and TCP on the same port; 0 picks a free one). RTP binds on sip_host, on the
    # even ports from rtp_port_min to rtp_port_max (RTCP on the odd one above); SDP and
    # Contact name sip_public_host (the address callers reach, behind NAT), else sip_host.
    sip_enabled: bool = True
    sip_host: str = "127.0.0.1"
    sip_port: int = Field(default=5060, ge=0, le=65535)
    sip_public_host: str = Field(default="", validate_default=True)
    rtp_port_min: int = Field(default=40000, ge=1024, le=65534)
    rtp_port_max: int = Field(default=40999, ge=1025, le=65535, validate_default=True)
    # Callers from these networks need no digest; others must answer a digest challenge
    # with one of sip_users ("user:password,user2:password2"), else they are refused.
    sip_allow: str = "127.0.0.1/32,::1/128"
    sip_users: str = ""
    sip_realm: str = "voicemesh"
    # "user:password" for calls the agent places (`voicemesh dial`): the answer when the
    # callee or a trunk's proxy challenges our INVITE (401/407). Empty: a challenge fails
    # the dial, saying so.
    sip_dial_auth: str = ""
    # The caller's jitter buffer: its depth follows the measured jitter within these bounds.
    sip_jitter_min_ms: int = Field(default=20, ge=20, le=1000)
    sip_jitter_max_ms: int = Field(default=200, ge=20, le=1000, validate_default=True)
    # SDES-SRTP: "allow" answers RTP/SAVP offers encrypted and RTP/AVP ones plain,
    # "require" refuses plain RTP (488), "off" refuses SRTP.
    sip_srtp: SrtpPolicy = SrtpPolicy.ALLOW
    # SIP over TLS on sip_tls_port, when a certificate (PEM chain) and its key are given.
    sip_tls_port: int = Field(default=5061, ge=0, le=65535)
    sip_tls_cert: str = ""
    sip_tls_key: str = Field(default="", validate_default=True)

    @field_validator("sip_allow")
    @classmethod
    def _allow(cls, v: str) -> str:
        SipAccess.parse_allow(v)
        return v

    @field_validator("sip_users")
    @classmethod
    def _users(cls, v: str) -> str:
        parse_users(v)
        return v

    @field_validator("sip_dial_auth")
    @classmethod
    def _dial_auth(cls, v: str) -> str:
        if len(parse_users(v)) > 1:
            raise ValueError("must be one user:password")
        return v

    @field_validator("sip_host")
    @classmethod
    def _ip(cls, v: str) -> str:
        if v:
            ipaddress.ip_address(v)  # ValueError names it
        return v

    @field_validator("rtp_port_max")
    @classmethod
    def _rtp_range(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("rtp_port_min")
        if low is not None and v <= low:
            raise ValueError(f"must be above rtp_port_min ({low}): a call takes an even port and the odd above")
        return v

    @field_validator("sip_public_host")
    @classmethod
    def _public_host(cls, v: str, info: ValidationInfo) -> str:
        if v:
            ipaddress.ip_address(v)  # ValueError names it
        elif info.data.get("sip_host") in ("0.0.0.0", "::"):
            raise ValueError("must name the address callers reach when sip_host is a wildcard")
        return v

    @field_validator("sip_jitter_max_ms")
    @classmethod
    def _jitter_bounds(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("sip_jitter_min_ms")
        if low is not None and v < low:
            raise ValueError(f"must be at least sip_jitter_min_ms ({low})")
        return v

    @field_validator("sip_tls_key")
    @classmethod
    def _tls_pair(cls, v: str, info: ValidationInfo) -> str:
        if bool(v) != bool(info.data.get("sip_tls_cert")):
            raise ValueError("sip_tls_cert and sip_tls_key go together: set both, or neither")
        return v

    def sip(self) -> SipSettings:
        return SipSettings(
            host=self.sip_host,
            port=self.sip_port,
            advertised_host=self.sip_public_host,
            rtp_ports=(self.rtp_port_min, self.rtp_port_max),
            allow=SipAccess.parse_allow(self.sip_allow),
            credentials=parse_users(self.sip_users),
            realm=self.sip_realm,
            # any edge with the same token accepts the nonces another one issued
            nonce_secret=hashlib.sha256(b"voicemesh-sip-nonce:" + self.edge_token.encode()).digest(),
            jitter_ms=(self.sip_jitter_min_ms, self.sip_jitter_max_ms),
            srtp=self.sip_srtp,
            tls_port=self.sip_tls_port,
            tls_cert=self.sip_tls_cert,
            tls_key=self.sip_tls_key,
            dial_auth=next(iter(parse_users(self.sip_dial_auth).items()), None),
        )

    @field_validator("twilio_stream_url")
    @classmethod
    def _stream_url(cls, v: str) -> str:
        if v and not v.startswith(("ws://", "wss://")):
            raise ValueError("must be the stream's ws:// or wss:// URL, as written in the TwiML")
        return v

    @field_validator("call_token_secret")
    @classmethod
    def _call_secret(cls, v: str) -> str:
        if v and len(v) < MIN_SECRET:
            raise ValueError(f"must be a secret of at least {MIN_SECRET} characters (or unset: no WebRTC calls)")
        return v

    @field_validator("webrtc_ice_servers")
    @classmethod
    def _ice(cls, v: str) -> str:
        parse_ice_servers(v)
        return v

    @field_validator("webrtc_ice_policy")
    @classmethod
    def _ice_policy(cls, v: IcePolicy, info: ValidationInfo) -> IcePolicy:
        servers = _ice_servers(info)
        if servers is not None and (problem := relay_problem(servers, v)):
            raise ValueError(problem)
        return v

    @field_validator("webrtc_turn_secret")
    @classmethod
    def _turn_secret(cls, v: str, info: ValidationInfo) -> str:
        servers = _ice_servers(info)
        if servers is not None and (problem := turn_auth_problem(servers, bool(v))):
            raise ValueError(problem)
        return v

    def ice(self) -> IceConfig:
        return IceConfig(
            servers=tuple(parse_ice_servers(self.webrtc_ice_servers)),
            policy=self.webrtc_ice_policy,
            turn_secret=self.webrtc_turn_secret,
            turn_ttl_s=self.webrtc_turn_ttl_s,
        )

    @field_validator("edge_token")
    @classmethod
    def _token_set(cls, v: str) -> str:
        if len(v) < 16:
            raise ValueError("must be set to a secret of at least 16 characters")
        return v
