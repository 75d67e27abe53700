"""What the internal mTLS costs one hop: 20 ms audio frames over a grpc.aio bidirectional
stream, plaintext against mTLS with the mesh's own credentials and caller check.

A real server and client on 127.0.0.1, in two processes (as two services are), with the
mesh's channel and server options. The server echoes every frame (640 bytes, 16 kHz PCM16);
two figures per mode:

- round trip of one frame on an idle stream (the hop a frame takes, twice), p50/p95/p99;
- frames per second through `--streams` concurrent streams sending as fast as they can
  (the CPU a hop costs, where 50 frames/s is one call's audio one way).

The modes alternate for `--rounds` rounds (plaintext, mTLS, plaintext, ...), so a change in
the machine's load during the run touches both; the ratios compare the medians over rounds.

    .venv/bin/python bench/grpc_hop.py [--frames 2000] [--streams 8] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from figures import cpu_model, load_average, percentile

from voicemesh.audio.frames import FRAME_BYTES
from voicemesh.mesh.certs import write_mesh_tls
from voicemesh.mesh.grpcutil import SERVER_OPTIONS, channel
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.mtls import Authorizer, MeshTls

METHOD = "/bench.Echo/Frames"
CALLERS = {"bench.Echo": frozenset({"media-edge"})}  # checked the way the mesh checks stt's


def _identity(b: bytes) -> bytes:
    return b


async def _echo(requests: AsyncIterator[bytes], _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for frame in requests:
        yield frame


def _serve(port: int, tls_dir: str | None, ready: multiprocessing.synchronize.Event) -> None:
    async def main() -> None:
        tls = MeshTls.load(Path(tls_dir), dt.datetime.now(dt.UTC)) if tls_dir else None
        interceptors = [Authorizer(lambda _i, _m: None, CALLERS)] if tls else []
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
        handler = grpc.stream_stream_rpc_method_handler(
            _echo, request_deserializer=_identity, response_serializer=_identity
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("bench.Echo", {"Frames": handler})]
        )
        bind = f"127.0.0.1:{port}"
        server.add_secure_port(bind, tls.server_credentials()) if tls else server.add_insecure_port(bind)
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(main())


def _stream(ch: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    return ch.stream_stream(METHOD, request_serializer=_identity, response_deserializer=_identity)()


async def round_trips(ch: grpc.aio.Channel, frames: int) -> list[float]:
    call = _stream(ch)
    frame = bytes(FRAME_BYTES)
    out = []
    for i in range(frames + 50):
        started = time.perf_counter()
        await call.write(frame)
        await call.read()
        if i >= 50:  # the first ones warm the connection up
            out.append((time.perf_counter() - started) * 1000)
    await call.done_writing()
    return out


async def throughput(ch: grpc.aio.Channel, streams: int, seconds: float) -> float:
    frame = bytes(FRAME_BYTES)
    counts = [0] * streams
    deadline = time.perf_counter() + seconds

    async def one(n: int) -> None:
        call = _stream(ch)
        while time.perf_counter() < deadline:
            await call.write(frame)
            await call.read()
            counts[n] += 1
        await call.done_writing()

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(streams)))
    return sum(counts) / (time.perf_counter() - started)


async def measure(
    address: str, tls: MeshTls | None, frames: int, streams: int, seconds: float
) -> dict[str, float]:
    async with channel(address, tls, "stt") as ch:
        rtt = await round_trips(ch, frames)
        fps = await throughput(ch, streams, seconds)
    return {
        "p50": percentile(rtt, 0.5),
        "p95": percentile(rtt, 0.95),
        "p99": percentile(rtt, 0.99),
        "fps": fps,
    }


def run_mode(tls_root: Path | None, frames: int, streams: int, seconds: float) -> dict[str, float]:
    port = free_port()
    ready = multiprocessing.Event()
    server_dir = str(tls_root / "stt") if tls_root else None
    proc = multiprocessing.Process(target=_serve, args=(port, server_dir, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the echo server did not start in 30 s")
        tls = MeshTls.load(tls_root / "media-edge", dt.datetime.now(dt.UTC)) if tls_root else None
        return asyncio.run(measure(f"127.0.0.1:{port}", tls, frames, streams, seconds))
    finally:
        proc.terminate()
        proc.join(10)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=2000, help="round trips measured per mode")
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams for the throughput")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput window per mode")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both modes, alternating")
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_mesh_tls(root, ("stt", "media-edge"), dt.datetime.now(dt.UTC))
        for _ in range(args.rounds):
            for mode, tls_root in (("plaintext", None), ("mTLS", root)):
                rows.append((mode, run_mode(tls_root, args.frames, args.streams, args.seconds)))
    print(f"cpu: {cpu_model()}, {multiprocessing.cpu_count()} cores; load {load_average()}")
    print(
        f"{args.frames} round trips of one {FRAME_BYTES}-byte frame; {args.streams} streams for {args.seconds:g} s"
    )
    print(f"{'mode':<10} {'rtt p50':>8} {'p95':>7} {'p99':>7} {'frames/s':>10}")
    for mode, r in rows:
        print(f"{mode:<10} {r['p50']:>6.3f}ms {r['p95']:>5.3f}ms {r['p99']:>5.3f}ms {r['fps']:>10.0f}")

    def median(mode: str, key: str) -> float:
        return percentile([r[key] for m, r in rows if m == mode], 0.5)

    ratios = {key: median("mTLS", key) / median("plaintext", key) for key in ("p50", "p99", "fps")}
    print(
        f"mTLS / plaintext (medians over {args.rounds} rounds): rtt p50 x{ratios['p50']:.2f}, "
        f"p99 x{ratios['p99']:.2f}, throughput x{ratios['fps']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
