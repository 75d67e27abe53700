"""Assignment latency and throughput of the session router, against a real Valkey.

Starts Valkey and NATS, registers `--instances` fake instances of stt, reasoning and tts
(kept alive by heartbeats, capacity too large to fill), then measures two paths:

- `store`: the router's `SessionStore` in this process: the Lua script alone (one EVALSHA
  per Assign, one per Release);
- `grpc`: `--routers` real router processes (`python -m voicemesh.router`, mTLS with the
  mesh's certificates, events to NATS), called as the edge calls them (`Assign` of the three
  roles, then `Release`), the calls spread over the routers.

For each: the latency of one Assign on an otherwise idle router (p50/p95/p99 over
`--samples`), then assignments per second with `--concurrency` calls in flight for
`--seconds` (each an Assign then its Release, as a call's life is), with their latency.
The client runs on the same cores as the routers and Valkey: the throughput is what the
whole machine does, not a router alone.

    .venv/bin/python bench/router.py [--instances 4] [--routers 1] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from figures import cpu_model, load_average, percentile

from voicemesh.mesh.access import GRPC_IDENTITIES
from voicemesh.mesh.certs import write_mesh_tls
from voicemesh.mesh.grpcutil import channel, check_health
from voicemesh.mesh.localservers import (
    die_with_parent,
    free_port,
    nats_server,
    nats_url,
    redis_url,
    valkey_server,
)
from voicemesh.mesh.mtls import MeshTls
from voicemesh.mesh.registry import PLACED_ROLES, InstanceInfo, InstanceRegistry, connect_redis
from voicemesh.router.store import SessionStore
from voicemesh.v1 import router_pb2, router_pb2_grpc

ROLES = list(PLACED_ROLES)
Call = Callable[[str], Awaitable[None]]  # one session's Assign, or Release


def stats(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 0.5):.2f} / p95 {percentile(ms, 0.95):.2f} / p99 {percentile(ms, 0.99):.2f} ms"
    )


async def idle_latency(assign: Call, release: Call, samples: int) -> list[float]:
    out = []
    for i in range(samples + 20):
        sid = uuid.uuid4().hex
        started = time.perf_counter()
        await assign(sid)
        if i >= 20:  # connections and scripts warm up first
            out.append((time.perf_counter() - started) * 1000)
        await release(sid)
    return out


async def loaded(assign: Call, release: Call, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """Assignments per second with `concurrency` sessions in flight, and their latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            sid = uuid.uuid4().hex
            started = time.perf_counter()
            await assign(sid)
            latencies.append((time.perf_counter() - started) * 1000)
            await release(sid)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def keep_alive(registry: InstanceRegistry, infos: list[InstanceInfo], stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.gather(*(registry.heartbeat(i) for i in infos))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


def start_routers(
    count: int, redis: str, nats: str, tls_root: Path, logs: Path
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs, addresses = [], []
    for n in range(count):
        port = free_port()
        env = {
            **os.environ,
            "VOICEMESH_INSTANCE_ID": f"session-router-bench-{n}",
            "VOICEMESH_GRPC_PORT": str(port),
            "VOICEMESH_REDIS_URL": redis,
            "VOICEMESH_NATS_URL": nats,
            "VOICEMESH_MESH_TLS_DIR": str(tls_root / "session-router"),
            "VOICEMESH_LOG_LEVEL": "WARNING",
        }
        with open(logs / f"router-{n}.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "voicemesh.router"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            )
        addresses.append(f"127.0.0.1:{port}")
    return procs, addresses


async def run(args: argparse.Namespace, home: Path) -> None:
    logs = home / "logs"
    logs.mkdir()
    with (
        valkey_server(log_path=logs / "valkey.log") as valkey,
        nats_server(home / "js", log_path=logs / "nats.log") as nats,
    ):
        redis = await connect_redis(redis_url(valkey))
        registry = InstanceRegistry(redis)
        infos = [
            InstanceInfo(role, f"{role}-bench-{i}", f"127.0.0.1:{20000 + i}", "local", 1_000_000)
            for role in ROLES
            for i in range(args.instances)
        ]
        for info in infos:
            await registry.register(info)
        stop = asyncio.Event()
        beats = asyncio.create_task(keep_alive(registry, infos, stop))
        results: dict[str, tuple[list[float], float, list[float]]] = {}
        try:
            store = SessionStore(redis)
            await store.load()

            async def store_assign(sid: str) -> None:
                await store.assign(sid, "local", ROLES, time.time())

            async def store_release(sid: str) -> None:
                await store.release(sid)

            idle = await idle_latency(store_assign, store_release, args.samples)
            rate, lat = await loaded(store_assign, store_release, args.concurrency, args.seconds)
            results["store (Lua only)"] = (idle, rate, lat)

            tls_root = home / "tls"
            write_mesh_tls(tls_root, GRPC_IDENTITIES, dt.datetime.now(dt.UTC))
            procs, addresses = start_routers(args.routers, redis_url(valkey), nats_url(nats), tls_root, logs)
            try:
                operator = MeshTls.load(tls_root / "cli", dt.datetime.now(dt.UTC))
                for address in addresses:
                    deadline = time.monotonic() + 60
                    while await check_health(address, tls=operator, peer="session-router") != "SERVING":
                        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                            raise RuntimeError(f"a router did not start (logs in {logs})")
                        await asyncio.sleep(0.1)
                edge = MeshTls.load(tls_root / "media-edge", dt.datetime.now(dt.UTC))
                channels = [channel(a, edge, "session-router") for a in addresses]
                stubs = [router_pb2_grpc.SessionRouterStub(ch) for ch in channels]

                def stub_for(sid: str) -> router_pb2_grpc.SessionRouterStub:
                    return stubs[hash(sid) % len(stubs)]

                async def grpc_assign(sid: str) -> None:
                    request = router_pb2.AssignRequest(session_id=sid, region="local", services=ROLES)
                    await stub_for(sid).Assign(request, timeout=5)

                async def grpc_release(sid: str) -> None:
                    await stub_for(sid).Release(router_pb2.ReleaseRequest(session_id=sid), timeout=5)

                idle = await idle_latency(grpc_assign, grpc_release, args.samples)
                rate, lat = await loaded(grpc_assign, grpc_release, args.concurrency, args.seconds)
                results[f"grpc, {args.routers} router(s), mTLS"] = (idle, rate, lat)
                for ch in channels:
                    await ch.close()
            except grpc.aio.AioRpcError as exc:
                raise RuntimeError(f"a router call failed: {exc.code().name} {exc.details()}") from None
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(20)
        finally:
            stop.set()
            await beats
            await redis.aclose()

    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; load {load_average()}")
    print(
        f"{args.instances} instances each of {', '.join(ROLES)}; idle: {args.samples} Assigns one at a time; "
        f"loaded: {args.concurrency} calls in flight for {args.seconds:g} s (Assign, then Release)"
    )
    for path, (idle, rate, lat) in results.items():
        print(f"{path}")
        print(f"  idle Assign     {stats(idle)}")
        print(f"  loaded Assign   {stats(lat)}; {rate:,.0f} assignments/s (each with its Release)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=4, help="instances per role in the registry")
    parser.add_argument("--routers", type=int, default=1, help="router processes for the grpc path")
    parser.add_argument("--samples", type=int, default=2000, help="idle Assigns measured per path")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight when loaded")
    parser.add_argument("--seconds", type=float, default=10.0, help="loaded window per path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
