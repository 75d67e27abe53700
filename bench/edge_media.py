"""Media-edge capacity: CPU per call, and how many concurrent calls one edge process holds.

Starts real Valkey and NATS, `bench/fakepeers.py` (fake, cheap stand-ins for the router,
stt, reasoning and tts: no models, so the figures are the edge's alone) and ONE real edge
process (`python -m voicemesh.edge`). Then, for each transport (native WebSocket, Twilio
Media Streams), it steps the number of concurrent calls a load generator in this process
places. Every call streams the caller fixtures (tests/e2e/fixtures/caller_*.wav), each
followed by 1.5 s of silence, in a loop, one 20 ms frame per call on one shared ticker;
what the edge sends back is read (Twilio marks are echoed) and discarded.

Each step warms up 3 s, then measures over `--seconds`:
- the edge process's CPU (utime + stime from /proc) per second, and per call;
- frame processing p50/p95/p99 from the edge's `voicemesh_frame_processing_seconds`
  histogram (the difference of two scrapes, interpolated within buckets);
- frames the edge processed per second against calls x 50 (is it keeping up?);
- the generator's own lateness (the last frame of each tick vs. its due time) and CPU, and
  the fake peers' CPU, so a saturated generator or machine is visible.

Stepping stops at the first step with p99 >= 5 ms or fewer than 95 % of the frames due.
Prints figures; never fails on time.

    .venv/bin/python bench/edge_media.py --transport both --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from figures import cpu_model
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE
from voicemesh.audio.g711 import ulaw_encode
from voicemesh.audio.resample import resample
from voicemesh.audio.wav import read_wav
from voicemesh.edge.twilio_signature import compute_signature
from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import LocalServer, die_with_parent, free_port, nats_server, valkey_server

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
FAKEPEERS = Path(__file__).resolve().parent / "fakepeers.py"
DEFAULT_STEPS = (1, 5, 10, 20, 40, 60, 80, 100)
TRANSPORT_LABEL = {"native": "native", "twilio": "twilio"}  # the edge metrics' transport label
TICK_S = 0.020
PAUSE_S = 1.5
WARMUP_S = 3.0
P99_LIMIT_MS = 5.0
KEEP_UP = 0.95
OPEN_AT_ONCE = 10  # calls set up concurrently while a step ramps up
READY_TIMEOUT_S = 15.0
ULAW_FRAME = 160  # 20 ms of 8 kHz μ-law
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- the caller audio ------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """The caller audio loop, pre-encoded once for both transports."""

    pcm: list[bytes]  # 640-byte PCM16 16 kHz frames (native)
    ulaw_b64: list[str]  # base64 of 160-byte μ-law 8 kHz frames (Twilio)
    speech_s: float


def load_script(pause_s: float, noise_rms: float) -> Script:
    parts, speech_s = [], 0.0
    for wav in sorted(FIXTURES.glob("caller_*.wav")):
        pcm, info = read_wav(wav)
        speech_s += info.duration_s
        parts.append(np.frombuffer(pcm, dtype=np.int16))
        parts.append(np.zeros(round(pause_s * SAMPLE_RATE), dtype=np.int16))
    samples = np.concatenate(parts)
    samples = samples[: len(samples) - len(samples) % (FRAME_BYTES // 2)]
    if noise_rms > 0:  # a phone line is never digitally silent
        noise = np.random.default_rng(1).normal(0.0, noise_rms, samples.size)
        samples = np.clip(samples + noise, -32768, 32767).astype(np.int16)
    pcm = samples.astype("<i2").tobytes()
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    ulaw = ulaw_encode(resample(samples, SAMPLE_RATE, 8000).astype("<i2").tobytes())
    chunks = [base64.b64encode(ulaw[i : i + ULAW_FRAME]).decode() for i in range(0, len(ulaw), ULAW_FRAME)]
    n = min(len(frames), len(chunks))
    return Script(frames[:n], chunks[:n], speech_s)


# ---- the load generator ----------------------------------------------------------------


class Caller:
    """One call: its WebSocket, where it is in the script, and a task reading the edge."""

    def __init__(self, ws: ClientConnection, twilio: bool, script: Script, offset: int, index: int) -> None:
        self.ws = ws
        self.twilio = twilio
        self.frames: list[bytes] | list[str] = script.ulaw_b64 if twilio else script.pcm
        self.pos = offset % len(self.frames)
        self.sid = f"MZ{index:032x}"
        self.call_sid = f"CA{index:032x}"
        self.sequence = 1  # Twilio: `start` was 1; every later message takes the next number
        self.chunk = 0
        self.alive = True
        self.stopping = False
        self.reader: asyncio.Task[None] | None = None

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def next_message(self) -> bytes | str:
        frame = self.frames[self.pos]
        self.pos = (self.pos + 1) % len(self.frames)
        if not self.twilio:
            return frame
        self.chunk += 1
        return (
            f'{{"event":"media","sequenceNumber":"{self.next_sequence()}","media":{{"track":"inbound",'
            f'"chunk":"{self.chunk}","timestamp":"{(self.chunk - 1) * 20}","payload":"{frame}"}},'
            f'"streamSid":"{self.sid}"}}'
        )


class LoadGenerator:
    """Every call's next frame, sent on one shared 20 ms ticker."""

    def __init__(self) -> None:
        self.callers: list[Caller] = []
        self.late_ms: list[float] = []
        self.sent = 0
        self.replies = 0  # agent replies played to the end (the edge's "end" playout mark)
        self.lost = 0  # calls the edge ended, or whose socket broke, while we were still calling
        self.edge_errors: Counter[str] = Counter()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            tick += 1
            due = start + tick * TICK_S
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for caller in self.callers:
                if not caller.alive:
                    continue
                try:
                    await caller.ws.send(caller.next_message())
                    self.sent += 1
                except ConnectionClosed:
                    self.mark_lost(caller)
            self.late_ms.append((loop.time() - due) * 1000)

    def mark_lost(self, caller: Caller) -> None:
        if caller.alive and not caller.stopping:
            self.lost += 1
        caller.alive = False

    async def read(self, caller: Caller) -> None:
        """Discard what the edge sends; echo Twilio's marks (Twilio does, once played)."""
        try:
            async for msg in caller.ws:
                if not isinstance(msg, str):
                    continue
                if caller.twilio:
                    if '"mark"' in msg:
                        name = json.loads(msg)["mark"]["name"]
                        self.replies += name.startswith("end:")
                        await caller.ws.send(
                            json.dumps(
                                {
                                    "event": "mark",
                                    "sequenceNumber": str(caller.next_sequence()),
                                    "streamSid": caller.sid,
                                    "mark": {"name": name},
                                }
                            )
                        )
                elif '"mark"' in msg and '"end"' in msg:
                    self.replies += 1
                elif '"error"' in msg:
                    self.edge_errors[json.loads(msg)["error"].get("code", "?")] += 1
        except ConnectionClosed:
            pass
        self.mark_lost(caller)


class CallFailed(RuntimeError):
    pass


async def _first_reply(ws: ClientConnection, twilio: bool) -> None:
    """Wait until the edge has the call running: native `ready`; Twilio the greeting's media."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            msg = await ws.recv()
            if not isinstance(msg, str):
                continue
            if twilio and '"media"' in msg:
                return
            if not twilio and '"ready"' in msg:
                return
            if '"error"' in msg:
                raise CallFailed(msg[:200])


async def open_call(
    edge: EdgeAddress, twilio: bool, script: Script, index: int, gen: LoadGenerator
) -> Caller:
    if twilio:
        url = edge.twilio_url
        headers = {"X-Twilio-Signature": compute_signature(edge.twilio_token, url)}
    else:
        url = edge.native_url
        headers = {"Authorization": f"Bearer {edge.token}"}
    offset = int(len(script.pcm) * ((index * 0.6180339887) % 1.0))  # callers out of step
    try:
        ws = await connect(
            url,
            additional_headers=headers,
            compression=None,
            ping_interval=None,
            open_timeout=10,
            max_size=1 << 20,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise CallFailed(f"connect: {exc}") from None
    caller = Caller(ws, twilio, script, offset, index)
    try:
        if twilio:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            start = {
                "accountSid": "AC" + "0" * 32,
                "streamSid": caller.sid,
                "callSid": caller.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {},
            }
            await ws.send(
                json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": caller.sid})
            )
        else:
            await ws.send(json.dumps({"start": {"agent": "", "sample_rate_hz": SAMPLE_RATE}}))
        await _first_reply(ws, twilio)
    except (ConnectionClosed, TimeoutError, CallFailed) as exc:
        await ws.close()
        raise CallFailed(f"call {index} did not start: {exc or type(exc).__name__}") from None
    caller.reader = asyncio.create_task(gen.read(caller), name=f"read-{index}")
    return caller


async def hang_up(caller: Caller) -> None:
    caller.stopping = True
    caller.alive = False
    with contextlib.suppress(ConnectionClosed):
        if caller.twilio:
            stop = {"accountSid": "AC" + "0" * 32, "callSid": caller.call_sid}
            await caller.ws.send(
                json.dumps(
                    {
                        "event": "stop",
                        "sequenceNumber": str(caller.next_sequence()),
                        "streamSid": caller.sid,
                        "stop": stop,
                    }
                )
            )
        else:
            await caller.ws.send(json.dumps({"stop": {"reason": "bench"}}))
    await caller.ws.close()
    if caller.reader is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await caller.reader


# ---- measuring -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Scrape:
    at: float
    cpu: dict[str, float]  # process name -> CPU seconds so far
    buckets: dict[str, dict[float, float]]  # frame processing: transport -> le -> cumulative count
    stages: dict[str, dict[float, float]]  # stage latency: stage -> le -> cumulative count
    dropped: dict[str, float]
    errors: dict[str, float]
    active: float


def scrape(metrics_url: str, pids: dict[str, int]) -> Scrape:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    buckets: dict[str, dict[float, float]] = {}
    stages: dict[str, dict[float, float]] = {}
    dropped: dict[str, float] = {}
    errors: dict[str, float] = {}
    active = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "voicemesh_frame_processing_seconds_bucket":
                buckets.setdefault(s.labels["transport"], {})[float(s.labels["le"])] = s.value
            elif s.name == "voicemesh_stage_latency_seconds_bucket":
                stages.setdefault(s.labels["stage"], {})[float(s.labels["le"])] = s.value
            elif s.name == "voicemesh_dropped_total":
                dropped[s.labels["what"]] = s.value
            elif s.name == "voicemesh_errors_total":
                errors[s.labels["kind"]] = s.value
            elif s.name == "voicemesh_sessions_active":
                active = s.value
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return Scrape(time.monotonic(), cpu, buckets, stages, dropped, errors, active)


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Like Prometheus: linear within the bucket holding the rank; in +Inf, the last bound."""
    if not cumulative or cumulative[-1][1] <= 0:
        return math.nan
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def window_buckets(after: dict[float, float], before: dict[float, float]) -> list[tuple[float, float]]:
    """The cumulative buckets of what was observed between two scrapes."""
    return sorted((le, n - before.get(le, 0.0)) for le, n in after.items())


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


@dataclass
class Step:
    calls: int
    window_s: float
    frames_per_s: float
    expected_per_s: float
    keep_up: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    final_p95_ms: float  # end of turn -> final transcript (the edge's stt_final stage)
    edge_core: float  # CPU seconds per second (1.0 = one core)
    per_call_pct: float  # % of one core per call
    peers_core: float
    generator_core: float
    sent_per_s: float
    replies_per_call_min: float
    late_p50_ms: float
    late_p99_ms: float
    dropped: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    lost: int = 0

    @property
    def frames_dropped(self) -> float:
        """Caller frames the edge dropped on their way to stt (its queue towards stt was full)."""
        return sum(v for k, v in self.dropped.items() if k.endswith("_frame"))

    @property
    def within_limits(self) -> bool:
        """p99 frame processing under the limit and (nearly) every frame due processed."""
        return self.p99_ms < P99_LIMIT_MS and self.keep_up >= KEEP_UP

    @property
    def held(self) -> bool:
        """Within the limits, and no caller audio lost on the way to stt."""
        return self.within_limits and self.frames_dropped == 0


def measure_step(
    calls: int, label: str, a: Scrape, b: Scrape, gen: LoadGenerator, sent: int, replies: int, lost: int
) -> Step:
    window = b.at - a.at
    cumulative = window_buckets(b.buckets.get(label, {}), a.buckets.get(label, {}))
    finals = window_buckets(b.stages.get("stt_final", {}), a.stages.get("stt_final", {}))
    frames = cumulative[-1][1] if cumulative else 0.0
    cpu = {k: (b.cpu[k] - a.cpu[k]) / window for k in b.cpu}
    ordered = sorted(gen.late_ms) or [math.nan]
    return Step(
        calls=calls,
        window_s=window,
        frames_per_s=frames / window,
        expected_per_s=calls / TICK_S,
        keep_up=frames / window / (calls / TICK_S),
        p50_ms=histogram_quantile(0.50, cumulative) * 1000,
        p95_ms=histogram_quantile(0.95, cumulative) * 1000,
        p99_ms=histogram_quantile(0.99, cumulative) * 1000,
        final_p95_ms=histogram_quantile(0.95, finals) * 1000,
        edge_core=cpu["edge"],
        per_call_pct=100 * cpu["edge"] / calls,
        peers_core=cpu["peers"],
        generator_core=cpu["generator"],
        sent_per_s=sent / window,
        replies_per_call_min=replies / calls / window * 60,
        late_p50_ms=ordered[len(ordered) // 2],
        late_p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        dropped=diff(b.dropped, a.dropped),
        errors=diff(b.errors, a.errors),
        lost=lost,
    )


COLUMNS = (
    ("calls", 5),
    ("frames/s", 8),
    ("of due", 7),
    ("p50 ms", 7),
    ("p95 ms", 7),
    ("p99 ms", 7),
    ("final p95", 9),
    ("edge", 6),
    ("per call", 8),
    ("peers", 6),
    ("gen", 5),
    ("gen late p99", 12),
    ("replies/min", 11),
)
HEADER = " ".join(f"{name:>{width}}" for name, width in COLUMNS) + "  drops, errors"


def row(s: Step) -> str:
    """One table row; CPU columns are % of one core."""
    cells = (
        f"{s.calls}",
        f"{s.frames_per_s:.0f}",
        f"{s.keep_up:.1%}",
        f"{s.p50_ms:.3f}",
        f"{s.p95_ms:.3f}",
        f"{s.p99_ms:.3f}",
        f"{s.final_p95_ms:.0f} ms",
        f"{s.edge_core:.0%}",
        f"{s.per_call_pct:.2f}%",
        f"{s.peers_core:.0%}",
        f"{s.generator_core:.0%}",
        f"{s.late_p99_ms:.1f} ms",
        f"{s.replies_per_call_min:.1f}",
    )
    extra = ", ".join(f"{k} {v:.0f}" for k, v in {**s.dropped, **s.errors}.items()) or "-"
    if s.lost:
        extra += f"; {s.lost} calls lost"
    return " ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True)) + f"  {extra}"


# ---- the processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeAddress:
    ws_port: int
    metrics_port: int
    grpc_port: int
    token: str
    twilio_token: str

    @property
    def native_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/call"

    @property
    def twilio_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/twilio"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


class Processes:
    """Everything the bench starts; `stop` ends it all (SIGTERM, then kill), newest first."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.servers: list[LocalServer] = []
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def server(self, server: LocalServer) -> LocalServer:
        self.servers.append(server)
        server.start()
        return server

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        self.children[name] = proc
        return proc

    def check(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{name} exited (code {proc.returncode}): {' | '.join(tail)}")

    def stop(self, grace_s: float = 15.0) -> None:
        for proc in reversed(self.children.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in reversed(self.children.values()):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for server in reversed(self.servers):
            server.stop()


def start_all(procs: Processes, max_calls: int) -> EdgeAddress:
    valkey = procs.server(valkey_server(log_path=procs.logs / "valkey.log"))
    nats = procs.server(nats_server(procs.home / "nats", log_path=procs.logs / "nats.log"))
    port_file = procs.home / "peers.json"
    procs.spawn("fakepeers", [sys.executable, str(FAKEPEERS), "--port-file", str(port_file)])
    deadline = time.monotonic() + 30
    while not port_file.exists():
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError("fakepeers did not write its port file in 30 s")
        time.sleep(0.05)
    peers = json.loads(port_file.read_text())
    edge = EdgeAddress(
        free_port(), free_port(), free_port(), secrets.token_urlsafe(24), secrets.token_hex(16)
    )
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "VOICEMESH_INSTANCE_ID": "media-edge-bench",
            "VOICEMESH_GRPC_PORT": str(edge.grpc_port),
            "VOICEMESH_METRICS_PORT": str(edge.metrics_port),
            "VOICEMESH_WS_PORT": str(edge.ws_port),
            "VOICEMESH_REDIS_URL": f"redis://127.0.0.1:{valkey.port}/0",
            "VOICEMESH_NATS_URL": f"nats://127.0.0.1:{nats.port}",
            "VOICEMESH_ROUTER_ADDRESS": peers["router"],
            "VOICEMESH_EDGE_TOKEN": edge.token,
            "VOICEMESH_TWILIO_AUTH_TOKEN": edge.twilio_token,
            "VOICEMESH_TWILIO_STREAM_URL": edge.twilio_url,
            "VOICEMESH_CAPACITY": str(max_calls),
            "VOICEMESH_DRAIN_TIMEOUT_S": "5",
            "VOICEMESH_LOG_FORMAT": "json",
        }
    )
    procs.spawn("media-edge", [sys.executable, "-m", "voicemesh.edge"], env)
    return edge


async def wait_serving(procs: Processes, edge: EdgeAddress, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await check_health(f"127.0.0.1:{edge.grpc_port}", timeout_s=0.5) != "SERVING":
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the edge is not serving after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


def edge_log_summary(path: Path) -> list[str]:
    """Warnings and errors the edge logged, counted by message."""
    seen: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            if line.strip():
                seen[f"(not JSON) {line.strip()[:120]}"] += 1
            continue
        if doc.get("level") in ("warning", "error", "critical"):
            key = f"{doc['level']}: {doc.get('msg')}"
            for k in ("code", "stream", "kind", "error", "task"):
                if k in doc:
                    key += f" {k}={str(doc[k])[:80]}"
            seen[key] += 1
    return [f"{n:>6} x {msg}" for msg, n in seen.most_common(12)]


# ---- the run ---------------------------------------------------------------------------


async def run_transport(
    kind: str,
    edge: EdgeAddress,
    pids: dict[str, int],
    script: Script,
    args: argparse.Namespace,
    procs: Processes,
) -> list[Step]:
    label = TRANSPORT_LABEL[kind]
    twilio = kind == "twilio"
    gen = LoadGenerator()
    ticker = asyncio.create_task(gen.run(), name="ticker")
    steps: list[Step] = []
    print(
        f"\n{label}: {args.seconds:.0f} s window per step after {WARMUP_S:.0f} s warm-up; "
        "edge, per call, peers, gen = CPU in % of one core",
        flush=True,
    )
    print(HEADER, flush=True)
    index = 0
    try:
        for calls in args.steps:
            gen.callers = [c for c in gen.callers if c.alive]
            missing = calls - len(gen.callers)
            gate = asyncio.Semaphore(OPEN_AT_ONCE)

            async def one(i: int, gate: asyncio.Semaphore = gate) -> Caller:
                async with gate:
                    return await open_call(edge, twilio, script, i, gen)

            opened = await asyncio.gather(*(one(index + i) for i in range(missing)), return_exceptions=True)
            index += missing
            failures = [str(x) for x in opened if isinstance(x, BaseException)]
            gen.callers.extend(c for c in opened if isinstance(c, Caller))
            if failures:
                print(f"  {len(failures)} of {missing} new calls failed: {failures[0]}", flush=True)
                break
            await asyncio.sleep(WARMUP_S)
            procs.check()
            a = await asyncio.to_thread(scrape, edge.metrics_url, pids)
            sent0, replies0, lost0, gen.late_ms = gen.sent, gen.replies, gen.lost, []
            await asyncio.sleep(args.seconds)
            b = await asyncio.to_thread(scrape, edge.metrics_url, pids)
            step = measure_step(
                calls, label, a, b, gen, gen.sent - sent0, gen.replies - replies0, gen.lost - lost0
            )
            steps.append(step)
            print(row(step), flush=True)
            if not step.within_limits:
                why = (
                    f"p99 {step.p99_ms:.2f} ms >= {P99_LIMIT_MS:.0f} ms"
                    if step.p99_ms >= P99_LIMIT_MS
                    else (f"{step.keep_up:.1%} of the frames due < {KEEP_UP:.0%}")
                )
                print(f"  stopped: {why}", flush=True)
                break
    finally:
        await asyncio.gather(*(hang_up(c) for c in gen.callers), return_exceptions=True)
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    if gen.edge_errors:
        print(f"  the edge sent errors: {dict(gen.edge_errors)}")
    deadline = time.monotonic() + 15
    while (
        await asyncio.to_thread(scrape, edge.metrics_url, pids)
    ).active > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return steps


def summary(kind: str, steps: list[Step], largest: int) -> tuple[str, float]:
    """The summary line of one transport, and its CPU per call (% of a core) at the top step held."""
    held = []
    for step in steps:  # the steps held in a row from the first
        if not step.held:
            break
        held.append(step)
    if not held:
        return f"{kind}: holds none of the steps (the smallest: {steps[0].calls} calls)", math.nan
    top = held[-1]
    slope = ""
    if len(held) >= 2:
        x = np.array([s.calls for s in held], dtype=float)
        y = np.array([s.edge_core for s in held])
        slope = f", {100 * np.polyfit(x, y, 1)[0]:.2f}% by the slope over the steps held"
    note = " (the largest step tried)" if top.calls == largest else ""
    line = (
        f"{kind}: holds {top.calls} concurrent calls{note} with p99 frame processing < {P99_LIMIT_MS:.0f} ms "
        f"(every frame processed, none dropped); CPU per call {top.per_call_pct:.2f}% of a core at "
        f"{top.calls} calls{slope}; there the edge uses {top.edge_core:.0%} of a core and end of turn -> "
        f"final transcript p95 is {top.final_p95_ms:.0f} ms"
    )
    within = [s for s in steps if s.within_limits]
    dropping = [s for s in steps if s.within_limits and s.frames_dropped]
    if within and within[-1].calls > top.calls and dropping:
        line += (
            f"\n  p99 < {P99_LIMIT_MS:.0f} ms and frames processed alone would say {within[-1].calls}: "
            f"from {dropping[0].calls} calls the edge dropped caller frames bound for stt"
        )
    return line, top.per_call_pct



async def bench(args: argparse.Namespace, procs: Processes) -> dict[str, object]:
    script = load_script(PAUSE_S, args.line_noise_rms)
    edge = start_all(procs, max(args.steps) + 10)
    await wait_serving(procs, edge)
    pids = {
        "edge": procs.children["media-edge"].pid,
        "peers": procs.children["fakepeers"].pid,
        "generator": os.getpid(),
    }
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at start; nothing pinned"
    )
    print(
        "peers: bench/fakepeers.py (fake router, stt, reasoning, tts; no models): the figures are the edge's"
    )
    loop_s = len(script.pcm) * TICK_S
    print(
        f"caller audio: {loop_s:.1f} s loop ({script.speech_s:.1f} s of fixtures, each + {PAUSE_S} s of "
        f"{f'line noise at RMS {args.line_noise_rms:.0f}' if args.line_noise_rms else 'digital silence'}); "
        f"logs in {procs.logs}{'' if args.keep_logs else ' (removed at the end; --keep-logs keeps them)'}"
    )
    a = await asyncio.to_thread(scrape, edge.metrics_url, pids)
    await asyncio.sleep(3.0)
    b = await asyncio.to_thread(scrape, edge.metrics_url, pids)
    idle = (b.cpu["edge"] - a.cpu["edge"]) / (b.at - a.at)
    print(f"edge idle (no calls): {idle:.1%} of a core")
    results: dict[str, list[Step]] = {}
    for kind in ("native", "twilio") if args.transport == "both" else (args.transport,):
        results[kind] = await run_transport(kind, edge, pids, script, args, procs)
    print()
    per_call: dict[str, float] = {}
    for kind, steps in results.items():
        line, per_call[kind] = summary(kind, steps, max(args.steps))
        print(line)
    if len(per_call) == 2 and not any(math.isnan(v) for v in per_call.values()):
        print(f"twilio / native CPU per call: {per_call['twilio'] / per_call['native']:.2f}x")
    problems = edge_log_summary(procs.logs / "media-edge.log")
    print("\nedge log warnings/errors:" + ("" if problems else " none"))
    for line in problems:
        print(line)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "edge_idle_core": idle,
        "steps": {k: [asdict(s) for s in v] for k, v in results.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transport", choices=("native", "twilio", "both"), default="both")
    parser.add_argument(
        "--steps",
        type=lambda s: sorted({int(x) for x in s.split(",")}),
        default=list(DEFAULT_STEPS),
        help="concurrent calls per step, comma-separated (default %(default)s)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per step")
    parser.add_argument(
        "--line-noise-rms",
        type=float,
        default=0.0,
        help="add white noise of this RMS (PCM16 units; 100 is about -50 dBFS) to the caller audio",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs after the run")
    args = parser.parse_args()
    if min(args.steps) < 1:
        parser.error("--steps must be positive")
    home = Path(tempfile.mkdtemp(prefix="voicemesh-edge-bench-"))
    procs = Processes(home)

    async def guarded() -> dict[str, object]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a `cmd &` child ignores it by default
            loop.add_signal_handler(sig, task.cancel)
        return await bench(args, procs)

    try:
        figures = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopping every process", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"edge_media: error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop()
        if not args.keep_logs:
            shutil.rmtree(home, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
