"""ICE servers (STUN/TURN) for callers behind NAT: `VOICEMESH_WEBRTC_ICE_SERVERS`, a JSON
list in the shape a browser's RTCConfiguration takes, for aiortc and for the page alike.

- The ICE policy (`VOICEMESH_WEBRTC_ICE_POLICY`): "all" gathers host (and STUN, TURN)
  candidates; "relay" only TURN ones, so media always flows through the TURN server (an
  edge whose own address callers cannot reach, as in a Kubernetes pod).
- Ephemeral TURN credentials (the TURN REST API coturn implements with `use-auth-secret`):
  with a shared secret, every turn:/turns: entry without a username gets a fresh
  username "<expiry unix time>:<label>" and credential base64(HMAC-SHA1(secret, username)),
  minted per call for the edge and per config answer for the page.

Pure: the clock comes in as `now`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

TURN_SCHEMES = ("turn:", "turns:")
DEFAULT_TURN_TTL_S = 3600.0


class IcePolicy(StrEnum):
    ALL = "all"  # host, server-reflexive and relay candidates
    RELAY = "relay"  # relay (TURN) candidates only

    def rtc(self) -> RTCIceTransportPolicy:
        return RTCIceTransportPolicy.RELAY if self is IcePolicy.RELAY else RTCIceTransportPolicy.ALL


def urls_of(server: RTCIceServer) -> list[str]:
    return server.urls if isinstance(server.urls, list) else [server.urls]


def is_turn(server: RTCIceServer) -> bool:
    return any(url.startswith(TURN_SCHEMES) for url in urls_of(server))


def ice_json(server: RTCIceServer) -> dict[str, Any]:
    out: dict[str, Any] = {"urls": urls_of(server)}
    if server.username:
        out["username"] = server.username
    if server.credential:
        out["credential"] = server.credential
    return out


def parse_ice_servers(text: str) -> list[RTCIceServer]:
    """`VOICEMESH_WEBRTC_ICE_SERVERS`: a JSON list of {"urls", "username"?, "credential"?},
    as a browser's RTCConfiguration takes it. ValueError names what is wrong (never a
    credential)."""
    if not text.strip():
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("must be a JSON list of ICE servers")
    servers = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "urls" not in item:
            raise ValueError(f"item {i} must be an object with urls")
        urls = item["urls"] if isinstance(item["urls"], list) else [item["urls"]]
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("stun:", *TURN_SCHEMES)):
                raise ValueError(f"item {i}: {url!r} is not a stun:, turn: or turns: URL")
        username, credential = item.get("username"), item.get("credential")
        for name, value in (("username", username), ("credential", credential)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"item {i}: {name} must be a string")
        if bool(username) != bool(credential):
            raise ValueError(f"item {i}: username and credential go together: set both, or neither")
        servers.append(RTCIceServer(urls=urls, username=username or None, credential=credential or None))
    return servers


def unauthenticated_turn(servers: Sequence[RTCIceServer]) -> list[int]:
    """Indexes of turn:/turns: entries with no username: the ones a TURN secret mints for."""
    return [i for i, s in enumerate(servers) if is_turn(s) and not s.username]


def turn_credential(secret: str, username: str) -> str:
    """The TURN REST API's password for `username`: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def mint_turn_username(now: float, ttl_s: float, label: str) -> str:
    """The TURN REST API's time-limited username: "<expiry unix time>:<label>"."""
    return f"{int(now + ttl_s)}:{label}"


def with_turn_credentials(
    servers: Sequence[RTCIceServer], secret: str, now: float, ttl_s: float, label: str
) -> list[RTCIceServer]:
    """`servers` with fresh credentials (valid until now + ttl_s) on every turn:/turns: entry
    that has no static username; the others as they are. No secret: unchanged."""
    if not secret:
        return list(servers)
    username = mint_turn_username(now, ttl_s, label)
    password = turn_credential(secret, username)
    return [
        RTCIceServer(urls=urls_of(s), username=username, credential=password)
        if is_turn(s) and not s.username
        else s
        for s in servers
    ]


def candidates(sdp: str) -> list[tuple[str, str]]:
    """(address, type) of every `a=candidate:` line of an SDP (RFC 8839: foundation,
    component, transport, priority, address, port, "typ", type, ...); a line too short to
    say is skipped."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) >= 8 and fields[6] == "typ":
                out.append((fields[4], fields[7]))
    return out


def relay_candidates(sdp: str) -> int:
    """How many relay candidates an SDP carries (its `a=candidate:... typ relay` lines)."""
    return sum(1 for _, kind in candidates(sdp) if kind == "relay")


def unusable_offer(offer: str, answer: str) -> str | None:
    """Why the offer left the answer without a candidate of its own (so the call could never
    connect), or None. aioice gives up at once on an offer whose every candidate is an mDNS
    name (a browser hiding its addresses, as Firefox does before a page has captured
    audio), and an offer without candidates cannot work without trickle ICE. An answer short
    of candidates for another reason (no TURN relay) is not the offer's fault: None."""
    if candidates(answer):
        return None
    offered = candidates(offer)
    if not offered:
        return "the offer has no ICE candidates (gather them before sending it: this edge takes no trickle ICE)"
    if all(address.endswith(".local") for address, _ in offered):
        return "every ICE candidate in the offer is an mDNS .local name, which this edge cannot resolve"
    return None


def relay_problem(servers: Sequence[RTCIceServer], policy: IcePolicy) -> str | None:
    """Why this policy cannot work with these servers, or None."""
    if policy is IcePolicy.RELAY and not any(is_turn(s) for s in servers):
        return (
            "relay needs a turn: or turns: server in VOICEMESH_WEBRTC_ICE_SERVERS "
            "(with policy relay every call's media goes through TURN)"
        )
    return None


def turn_auth_problem(servers: Sequence[RTCIceServer], has_secret: bool) -> str | None:
    """Why a TURN entry could not authenticate, or None."""
    missing = unauthenticated_turn(servers)
    if missing and not has_secret:
        items = ", ".join(str(i) for i in missing)
        return (
            f"VOICEMESH_WEBRTC_ICE_SERVERS item {items} is a TURN server without a username: give it "
            "a username and credential, or set this secret to mint ephemeral ones"
        )
    return None


@dataclass(frozen=True)
class IceConfig:
    """What every peer connection of the edge, and the page, is told about ICE."""

    servers: tuple[RTCIceServer, ...] = ()
    policy: IcePolicy = IcePolicy.ALL
    turn_secret: str = field(default="", repr=False)
    turn_ttl_s: float = DEFAULT_TURN_TTL_S

    def servers_at(self, now: float, label: str) -> list[RTCIceServer]:
        return with_turn_credentials(self.servers, self.turn_secret, now, self.turn_ttl_s, label)

    def rtc(self, now: float, label: str) -> RTCConfiguration:
        return RTCConfiguration(iceServers=self.servers_at(now, label), iceTransportPolicy=self.policy.rtc())

    def page(self, now: float, label: str) -> dict[str, Any]:
        """The softphone config's ICE part, with credentials minted for this answer."""
        return {
            "ice_servers": [ice_json(s) for s in self.servers_at(now, label)],
            "ice_transport_policy": str(self.policy),
        }

    def turn_urls(self) -> list[str]:
        return [url for s in self.servers for url in urls_of(s) if url.startswith(TURN_SCHEMES)]
