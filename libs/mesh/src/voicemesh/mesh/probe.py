"""Container probes: a gRPC health check and the preStop drain, as one small command.

    python -m voicemesh.mesh.probe health HOST:PORT [--service NAME] [--timeout S]
        exit 0 when the gRPC health service answers SERVING, else 1 with one stderr line.
    python -m voicemesh.mesh.probe drain [--pid 1] [--timeout S] [--address HOST:PORT]
        the preStop hook: ask the service (PID 1 in its container) to drain with
        DRAIN_SIGNAL (it goes NOT_SERVING, marks itself draining in the registry and takes
        no new sessions, but keeps serving the live ones), then wait until its gRPC health
        service reports `voicemesh.drained` SERVING: no live session is left. The hook then
        returns and Kubernetes sends SIGTERM, which finds nothing left to wait for. The hook
        never kills the process, so it is never killed with it.

The image HEALTHCHECK runs `health`; Kubernetes uses its native `grpc:` probe (readiness on
"", liveness on `voicemesh.liveness`) on the plaintext health-only port
(VOICEMESH_HEALTH_PORT), since the kubelet cannot do mTLS, and `drain` as the preStop hook.

Both speak mTLS to the gRPC port as the service itself, with the credentials its environment
names (VOICEMESH_MESH_TLS_DIR), unless VOICEMESH_MESH_TLS=off; `drain` asks the plaintext
health port instead when there is one, and so does `health --plaintext`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .grpcutil import check_health
from .localservers import pid_alive, port_open
from .mtls import MeshTls
from .service import DRAIN_SIGNAL, DRAINED

PROG = "voicemesh-probe"
SERVING = "SERVING"
DRAIN_POLL_S = 0.1


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def parse_address(value: str) -> str:
    """`HOST:PORT` (a bracketed IPv6 host is fine); argparse turns the error into usage."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return value


def own_tls() -> MeshTls | None:
    """The service's own mTLS identity, as its environment names it (None: in the clear).
    Raises ValueError when the credentials cannot be used."""
    directory = os.environ.get("VOICEMESH_MESH_TLS_DIR", "")
    if os.environ.get("VOICEMESH_MESH_TLS", "on") == "off" or not directory:
        return None
    return MeshTls.load(Path(directory), dt.datetime.now(dt.UTC))


def _check(address: str, service: str, timeout_s: float, tls: MeshTls | None, peer: str = "") -> str:
    """Health over mTLS as `tls`, from a server holding `peer`'s certificate (default: the
    same identity: a service's probe asks the service itself)."""
    peer = peer or (tls.identity if tls else "")
    return asyncio.run(check_health(address, service, timeout_s, tls, peer))


def health(
    address: str, service: str = "", timeout_s: float = 1.0, tls: MeshTls | None = None, peer: str = ""
) -> int:
    """Exit status of `health`: 0 when `address` reports SERVING for `service`."""
    status = _check(address, service, timeout_s, tls, peer)
    if status == SERVING:
        return 0
    what = f"service {service!r} at {address}" if service else address
    if status == "UNREACHABLE":
        host, _, port = address.rpartition(":")
        hint = ""
        if tls is None and port_open(host.strip("[]"), int(port)):
            hint = " (it takes connections: an mTLS port? VOICEMESH_MESH_TLS_DIR names the credentials)"
        print(
            f"{PROG}: {what} did not answer a gRPC health check within {timeout_s:g} s{hint}", file=sys.stderr
        )
    else:
        print(f"{PROG}: {what} is {status}", file=sys.stderr)
    return 1


def _port(variable: str) -> str | None:
    port = os.environ.get(variable, "")
    return f"127.0.0.1:{port}" if port.isdigit() and int(port) else None


def default_address() -> str | None:
    """The service's own health service, from the same environment the service reads: its
    plaintext health port if it has one, else its gRPC port."""
    return _port("VOICEMESH_HEALTH_PORT") or _port("VOICEMESH_GRPC_PORT")


def drain(
    pid: int = 1, timeout_s: float = 60.0, address: str | None = None, tls: MeshTls | None = None
) -> int:
    """Exit status of `drain`: DRAIN_SIGNAL to `pid`, then wait for its sessions to end.

    Returns once the service at `address` reports DRAINED, when it has exited, or after
    `timeout_s` (still 0: the hook has done its part, and SIGTERM follows). Without an
    address there is nothing to wait on: the hook returns at once and the service's SIGTERM
    drain does the waiting. A pid that cannot be signalled is 1.
    """
    try:
        os.kill(pid, DRAIN_SIGNAL)
    except ProcessLookupError:
        print(f"{PROG}: no process with pid {pid} to drain", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"{PROG}: not allowed to signal pid {pid} (run as the service's user)", file=sys.stderr)
        return 1
    if address is None:
        print(
            f"{PROG}: no gRPC address (VOICEMESH_GRPC_PORT): SIGTERM will wait for live sessions",
            file=sys.stderr,
        )
        return 0
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if _check(address, DRAINED, 1.0, tls) == SERVING:
            return 0
        if time.monotonic() >= deadline:
            print(f"{PROG}: {timeout_s:g} s passed and pid {pid} still has live sessions", file=sys.stderr)
            return 0
        time.sleep(DRAIN_POLL_S)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voicemesh.mesh.probe", description="Container probes for a voicemesh service."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    h = sub.add_parser("health", help="exit 0 when the gRPC health service says SERVING")
    h.add_argument("address", type=parse_address, metavar="HOST:PORT")
    h.add_argument("--service", default="", help='gRPC service name to check (default "": the whole server)')
    h.add_argument("--timeout", type=_seconds, default=1.0, metavar="S", help="seconds to wait (default 1)")
    h.add_argument("--plaintext", action="store_true", help="ask a plaintext health port (no mTLS)")
    h.add_argument(
        "--peer", default="", metavar="IDENTITY", help="the service expected there (default: this one's own)"
    )
    d = sub.add_parser("drain", help="ask the service to drain and wait until its live sessions end")
    d.add_argument("--pid", type=int, default=1, help="process to drain (default 1, the container's service)")
    d.add_argument("--timeout", type=_seconds, default=60.0, metavar="S", help="seconds to wait (default 60)")
    d.add_argument(
        "--address",
        type=parse_address,
        default=default_address(),
        metavar="HOST:PORT",
        help=(
            "the service's gRPC health service (default: 127.0.0.1:$VOICEMESH_HEALTH_PORT, "
            "else 127.0.0.1:$VOICEMESH_GRPC_PORT)"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plaintext = args.plaintext if args.command == "health" else args.address == _port("VOICEMESH_HEALTH_PORT")
    try:
        tls = None if plaintext else own_tls()
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if args.command == "health":
        return health(args.address, args.service, args.timeout, tls, args.peer)
    return drain(args.pid, args.timeout, args.address, tls)


if __name__ == "__main__":
    sys.exit(main())
