"""`voicemesh token`: a short-lived call token for a browser or an app, from the local
mesh's edge (`POST /v1/tokens` with the edge token), and the softphone page's address."""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

from .state import StateError, read_state

PROG = "voicemesh token"


def http_base(edge_url: str) -> str:
    """ws://host:port/v1/call -> http://host:port (wss -> https)."""
    parts = urlsplit(edge_url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


def fetch_token(base: str, edge_token: str, agent: str, ttl_s: float | None) -> object:
    """The edge's JSON answer to POST /v1/tokens (HTTPError if it refuses)."""
    body: dict[str, object] = {"agent": agent}
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    request = urllib.request.Request(
        f"{base}/v1/tokens",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {edge_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer: object = json.loads(resp.read())
    return answer


def seconds(text: str) -> float:
    """--ttl: a positive, finite number of seconds (the edge caps it at its own TTL bound)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        state = read_state()
    except StateError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    base = http_base(state.edge_url)
    try:
        answer = fetch_token(base, state.edge_token, args.agent or "", args.ttl)
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip()
        print(f"{PROG}: error: the edge refused: {exc.code} {reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"{PROG}: error: cannot reach the edge at {base} (is the mesh up? `voicemesh status`): {exc}",
            file=sys.stderr,
        )
        return 1
    except ValueError:  # not JSON: not the edge we expect
        print(f"{PROG}: error: the edge at {base} did not answer with a token", file=sys.stderr)
        return 1
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        print(f"{PROG}: error: the edge at {base} did not answer with a token", file=sys.stderr)
        return 1
    print(token)
    page = f"{base}/?token={quote(token)}" + (f"&agent={quote(args.agent)}" if args.agent else "")
    print(f"softphone: {page}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "token",
        help="print a short-lived call token (WebRTC, the softphone page)",
        description=(
            "Ask the local mesh's edge for a call token: browsers and apps present it to place "
            "WebRTC calls (Authorization: Bearer, or ?token=). Prints the token on stdout and "
            "the softphone page's address on stderr."
        ),
    )
    p.add_argument("--agent", metavar="ID", help="bind the token to this agent (default: any)")
    p.add_argument(
        "--ttl", type=seconds, metavar="SECONDS", help="seconds the token lives (default: the edge's, 300)"
    )
    p.set_defaults(func=run)
