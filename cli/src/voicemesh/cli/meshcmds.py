"""`voicemesh up`, `down` and `status`: the local mesh's lifecycle."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import pid_alive
from voicemesh.mesh.mtls import MeshTls
from voicemesh.mesh.urls import redact_url

from .localmesh import SINGLE_INSTANCE, LocalMesh, MeshError, MeshPorts, parse_replicas
from .state import ServiceEndpoint, StateError, clear_state, default_home, read_state, write_state
from .supervise import Exit, GiveUp, RestartPolicy, Supervisor

# How often the supervisor looks at its children, and at restarted ones' health.
POLL_S = 0.1
HEALTH_EVERY_S = 0.5


def _default_agents_dir() -> Path:
    env = os.environ.get("VOICEMESH_AGENTS_DIR")
    return Path(env) if env else Path("agents")


def cmd_up(args: argparse.Namespace) -> int:
    home: Path = args.home
    agents_dir: Path = args.agents_dir.resolve()
    try:
        existing = read_state(home)
    except StateError:
        existing = None
    if existing is not None and pid_alive(existing.supervisor_pid):
        print(
            f"voicemesh up: error: a mesh is already running here (pid {existing.supervisor_pid}); "
            "stop it with `voicemesh down`",
            file=sys.stderr,
        )
        return 1
    if not agents_dir.is_dir():
        print(f"voicemesh up: error: agents folder {agents_dir} does not exist", file=sys.stderr)
        return 2
    replicas: dict[str, int] = args.replicas or {}
    print(f"starting voicemesh (logs in {home / 'logs'}) ...", flush=True)
    ports = MeshPorts.free(replicas) if args.free_ports else MeshPorts(ws=args.ws_port)
    mesh = LocalMesh(
        home, agents_dir, ports, args.agent, log=lambda m: print("  " + m, flush=True), replicas=replicas
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = time.monotonic()
    try:
        mesh.start()
    except MeshError as exc:
        print(f"voicemesh up: error: {exc}", file=sys.stderr)
        return 1
    write_state(home, mesh.state())
    print(
        f"\nvoicemesh is up in {time.monotonic() - started:.1f} s; agent '{args.agent}' answers at {mesh.edge_url}\n"
        f"  place a call:   .venv/bin/voicemesh call tests/e2e/fixtures/caller_party.wav\n"
        f"  as Twilio:      .venv/bin/voicemesh call --twilio tests/e2e/fixtures/caller_party.wav"
        f"   (stream {mesh.twilio_url})\n"
        f"  over SIP:       {mesh.sip_uri}   (e.g. sipp or baresip from this machine)\n"
        f"  recent calls:   .venv/bin/voicemesh calls\n"
        f"  status:         .venv/bin/voicemesh status\n"
        f"  stop:           Ctrl-C here, or .venv/bin/voicemesh down",
        flush=True,
    )
    try:
        code = supervise(mesh, home, stop, RestartPolicy())
    finally:
        print("stopping voicemesh (draining live calls) ...", flush=True)
        mesh.stop()
        clear_state(home)
        print("stopped", flush=True)
    return code


def _say(message: str) -> None:
    print(f"voicemesh up: {message}", file=sys.stderr, flush=True)


def supervise(mesh: LocalMesh, home: Path, stop: threading.Event, policy: RestartPolicy) -> int:
    """Run until `stop` (0) or until the mesh cannot go on (1): restart crashed instances as
    the policy decides, give up on one that keeps crashing, and stop when Valkey or NATS dies."""
    supervisor = Supervisor(policy)
    now = time.monotonic()
    for svc in mesh.services:
        supervisor.started(svc.instance_id, now)
    recovering: dict[str, float] = {}  # restarted, not yet SERVING: instance id -> when it died
    next_health = now
    while not stop.wait(POLL_S):
        now = time.monotonic()
        dead_servers, exits = mesh.dead_servers(), mesh.reap()
        if stop.is_set():  # a Ctrl-C in a terminal reaches the children too: not crashes
            break
        for server, returncode in dead_servers:
            # The services cannot work without them; restarting them would also lose their data.
            _say(f"error: {server} {Exit(returncode).describe()}; stopping the mesh (see {home / 'logs'})")
            return 1
        for svc, returncode in exits:
            decision = supervisor.exited(svc.instance_id, returncode, now)
            if isinstance(decision, GiveUp):
                last = svc.last_error()
                _say(f"error: {decision.describe()}" + (f" (last log line: {last})" if last else ""))
                return 1
            recovering.setdefault(svc.instance_id, now)
            _say(
                f"{svc.describe_exit(returncode)}; restarting it in {decision.delay_s:.1f} s "
                f"(crash {decision.crashes} within {policy.crash_window_s:.0f} s; "
                f"up gives up at {policy.crash_limit})"
            )
            write_state(home, mesh.state())  # its pid is 0 until it is back
        due = supervisor.tick(now)
        for instance_id in due:
            svc = mesh.restart(instance_id)
            supervisor.started(instance_id, time.monotonic())
            _say(f"restarted {instance_id} (pid {svc.proc.pid if svc.proc else 0})")
        if due:
            write_state(home, mesh.state())
        if recovering and now >= next_health:
            next_health = now + HEALTH_EVERY_S
            for instance_id, died_at in list(recovering.items()):
                svc = next(s for s in mesh.services if s.instance_id == instance_id)
                if svc.proc is None:
                    continue
                if asyncio.run(mesh.check_health(svc)) == "SERVING":
                    _say(f"{instance_id} is serving again, {time.monotonic() - died_at:.1f} s after it died")
                    del recovering[instance_id]
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        state = read_state(args.home)
    except StateError as exc:
        print(f"voicemesh down: {exc}", file=sys.stderr)
        return 1
    if not pid_alive(state.supervisor_pid):
        clear_state(args.home)
        print("voicemesh down: the mesh was not running (removed its stale state file)")
        return 0
    os.kill(state.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + 40
    while pid_alive(state.supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(state.supervisor_pid):
        print(f"voicemesh down: error: pid {state.supervisor_pid} did not stop", file=sys.stderr)
        return 1
    print("stopped")
    return 0


async def _health_table(services: list[ServiceEndpoint], tls: MeshTls | None) -> list[str]:
    checks = (check_health(s.grpc_address, timeout_s=1.0, tls=tls, peer=s.name) for s in services)
    return list(await asyncio.gather(*checks))


def cmd_status(args: argparse.Namespace) -> int:
    try:
        state = read_state(args.home)
        tls = state.tls()
    except StateError as exc:
        print(f"voicemesh status: {exc}", file=sys.stderr)
        return 1
    rows = [(s.instance_id or s.name, s.grpc_address) for s in state.services]
    health = asyncio.run(_health_table(state.services, tls))
    width = max(len(n) for n, _ in rows)
    for (name, addr), status, svc in zip(rows, health, state.services, strict=True):
        print(f"{name:<{width}}  {addr:<16}  {status:<12}  {svc.metrics_url}")
    print(f"{'edge (calls)':<{width}}  {state.edge_url}")
    if state.twilio_url:
        print(
            f"{'twilio stream':<{width}}  {state.twilio_url}  (signed with twilio_auth_token in state.json)"
        )
    if state.sip_uri:
        print(f"{'sip (udp, tcp)':<{width}}  {state.sip_uri}  (callers from 127.0.0.1 need no digest)")
    print(f"{'valkey':<{width}}  {redact_url(state.redis_url)}  (password in state.json)")
    print(f"{'nats':<{width}}  {redact_url(state.nats_url)}  (password in state.json)")
    return 0 if all(h == "SERVING" for h in health) else 1


def _replicas_arg(text: str) -> dict[str, int]:
    try:
        return parse_replicas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home", type=Path, default=default_home(), help="state and logs (default ./.voicemesh)"
    )
    up = sub.add_parser(
        "up",
        parents=[home],
        help="start Valkey, NATS and every service locally, restarting crashed ones; Ctrl-C stops all",
    )
    up.add_argument(
        "--agents-dir", type=Path, default=_default_agents_dir(), help="folder of agent YAML files"
    )
    up.add_argument(
        "--agent", default=os.environ.get("VOICEMESH_DEFAULT_AGENT", "restaurant"), help="default agent id"
    )
    up.add_argument("--ws-port", type=int, default=8080, help="port of the edge's WebSocket media stream")
    up.add_argument(
        "--free-ports", action="store_true", help="pick free ports for everything (run several meshes)"
    )
    up.add_argument(
        "--replicas",
        type=_replicas_arg,
        metavar="NAME=N[,NAME=N]",
        help="run N instances of a service, e.g. stt=2,reasoning=2,tts=2 ("
        + " and ".join(SINGLE_INSTANCE)
        + " run one)",
    )
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", parents=[home], help="stop the local mesh")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", parents=[home], help="each service's address and health")
    status.set_defaults(func=cmd_status)
