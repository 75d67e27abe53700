"""ICE servers (STUN/TURN) for callers behind NAT: `VOICEMESH_WEBRTC_ICE_SERVERS`, a JSON
list in the shape a browser's RTCConfiguration takes, for aiortc and for the page alike."""

from __future__ import annotations

import json
from typing import Any

from aiortc import RTCIceServer


def ice_json(server: RTCIceServer) -> dict[str, Any]:
    out: dict[str, Any] = {"urls": server.urls if isinstance(server.urls, list) else [server.urls]}
    if server.username:
        out["username"] = server.username
    if server.credential:
        out["credential"] = server.credential
    return out


def parse_ice_servers(text: str) -> list[RTCIceServer]:
    """`VOICEMESH_WEBRTC_ICE_SERVERS`: a JSON list of {"urls", "username"?, "credential"?},
    as a browser's RTCConfiguration takes it. ValueError names what is wrong."""
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
            if not isinstance(url, str) or not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"item {i}: {url!r} is not a stun:, turn: or turns: URL")
        servers.append(RTCIceServer(urls=urls, username=item.get("username"), credential=item.get("credential")))
    return servers
