"""Concurrent SIP calls from Debian's SIPp against the whole mesh (issue 7): do they all
complete, what does a call cost in CPU, and how well paced is the RTP the edge sends back?

For each N in `--calls` (default 20), SIPp places N calls at once (`-m N -l N -r N`) with
tests/e2e/sip/uac_stream.xml: each streams the JFK recording
(/work/shared/assets/audio/jfk8k.ulaw, 11 s of 8 kHz μ-law) as PCMU from the moment it is
answered (after `--lead-s` of silence, 0 by default: the caller talks over the greeting),
holds `--hold-ms` from the answer, then hangs up. SIPp sends every call's RTP from its one
media port, so the edge's symmetric RTP sends every call back to that port, each from its
own edge port. The runs share one mesh, started here on free ports with the edge's RTP on a
known range (`--rtp-ports`); the mesh is left to go quiet between runs (every call listed
as ended, stt no longer busy).

Per N it prints:

- the calls: SIPp's exit code, its successful/failed counts and retransmissions (its
  `-trace_stat` file), INVITE -> 200 OK p50/max (`-trace_rtt`), and the calls the mesh
  listed (`voicemesh calls`' rows) with how they ended;
- CPU per service (utime + stime from /proc/<pid>/stat) over the SIPp run: seconds, % of
  one core, the same when the mesh is idle, and above that idle rate, % of one core per
  concurrent call and ms of CPU per call-second (call-seconds: the listed calls'
  durations); what each service spent after SIPp was done until the mesh was quiet;
  SIPp's own CPU (the reaped child's); the machine's busy share (and how much of it was
  neither the mesh nor SIPp: another user's work skews every figure here) and stolen
  (hypervisor) share, and the host's UDP receive-buffer drops (/proc/net/snmp);
- from the calls' session events: the greeting's first tts audio (p50/max, and how many
  greetings the caller cut before any audio), the final transcripts (and how many were
  empty), and the callers' RTP as the edge received it (each call's final media_quality:
  received, lost, concealed); then what each service's voicemesh_dropped_total and
  voicemesh_errors_total grew by;
- the pacing of the edge's RTP to the callers (tcpdump on lo, `udp src portrange` of the
  edge's RTP range, PCMU only): per SSRC, the capture-time gap between consecutive packets
  whose timestamps step by exactly 160 (inside a talk spurt), p50/p95/p99/max over all
  calls and the count over 40 ms; and the share of packets whose sequence number is the
  previous + 1, and whose timestamp is the previous + 160 or, on a marked packet that
  starts a new spurt, a whole number of frames later.

Then one summary row per N. Needs root (tcpdump), SIPp and tcpdump (`make tools`). Prints
figures; never fails on them.

    .venv/bin/python bench/sip_load.py --calls 1,20,40
    .venv/bin/python bench/sip_load.py --calls 20 --lead-s 8 --hold-ms 22000   # the greeting plays
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUPPORT = REPO / "tests" / "support"
if str(SUPPORT) not in sys.path:  # SIPp and tcpdump, as the e2e tests drive them
    sys.path.insert(0, str(SUPPORT))

from figures import cpu_model, load_average, percentile  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sipp import ULAW_SILENCE, Rtp, capture_udp_range, rtp_of, run_sipp  # noqa: E402

from voicemesh.audio.frames import FRAME_MS  # noqa: E402
from voicemesh.cli.calls_cmd import CallRow, calls_from_events, fetch_call_events  # noqa: E402
from voicemesh.cli.events_cmd import fetch_events  # noqa: E402
from voicemesh.cli.localmesh import LocalMesh, MeshPorts  # noqa: E402
from voicemesh.mesh.events import event_name  # noqa: E402
from voicemesh.v1 import events_pb2  # noqa: E402

JFK = REPO.parent / "shared" / "assets" / "audio" / "jfk8k.ulaw"
SCENARIO = "uac_stream.xml"
PCMU = 0
PHONE_RATE = 8000  # PCMU's RTP clock, and μ-law bytes a second
FRAME_TS = PHONE_RATE * FRAME_MS // 1000  # 160: one frame's timestamp step
LATE_GAP_MS = 40.0
TICK_S = os.sysconf("SC_CLK_TCK")
IDLE_S = 5.0  # how long the idle mesh is measured, before the first run
QUIET_CORE = 0.10  # stt under this share of a core for QUIET_FOR_S: the backlog is done
QUIET_FOR_S = 2.0
QUIET_TIMEOUT_S = 90.0
EVENT_READERS = 8  # sessions whose events are read at once
COMPLAINTS_SHOWN = 5
COMPLAINT_CHARS = 200


# ---- CPU, from /proc ---------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process (all its threads), in seconds; 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / TICK_S  # fields 14 and 15 of proc(5)


def machine_ticks() -> tuple[int, int, int]:
    """(busy, stolen, total) jiffies of all cores, from /proc/stat: busy is this machine's
    own work, stolen what the hypervisor gave to other guests."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle, steal = values[3] + values[4], values[7]  # idle + iowait; steal
    total = sum(values[:8])  # guest time is already in user
    return total - idle - steal, steal, total


def udp_receive_drops() -> int:
    """Datagrams this host dropped because a socket's receive buffer was full (all sockets)."""
    for header, values in itertools.pairwise(Path("/proc/net/snmp").read_text().splitlines()):
        if header.startswith("Udp:") and values.startswith("Udp:"):
            return int(dict(zip(header.split(), values.split(), strict=True))["RcvbufErrors"])
    return 0


def reaped_children_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


@dataclass(frozen=True)
class CpuSample:
    at: float  # monotonic
    services: dict[str, float]  # seconds of CPU so far, by service
    machine: tuple[int, int, int]
    children: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSample:
        return cls(
            time.monotonic(),
            {name: process_cpu_s(pid) for name, pid in pids.items()},
            machine_ticks(),
            reaped_children_s(),
        )

    def since(self, earlier: CpuSample) -> dict[str, float]:
        return {name: self.services[name] - earlier.services.get(name, 0.0) for name in self.services}

    def machine_since(self, earlier: CpuSample) -> tuple[float, float]:
        """The shares of all cores (0..1) busy here and stolen, between the samples."""
        busy, stolen, total = (a - b for a, b in zip(self.machine, earlier.machine, strict=True))
        return (busy / total, stolen / total) if total else (0.0, 0.0)


def service_pids(mesh: LocalMesh) -> dict[str, int]:
    """The five services' pids, then Valkey's and NATS's."""
    pids = {s.name: s.proc.pid for s in mesh.services if s.proc is not None}
    pids.update({server.name: server.pid for server in mesh.servers if server.pid})
    if "media-edge" not in pids:
        raise RuntimeError("the mesh has no running media-edge process")
    return pids


# ---- RTP pacing (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Pacing:
    ssrcs: int
    packets: int
    gaps_ms: list[float]  # between consecutive packets of a talk spurt (timestamp +160)
    seq_ok: float  # share of packets (after each SSRC's first) with sequence = previous + 1
    ts_ok: float  # ... with timestamp = previous + 160, or a marked spurt start on a frame

    @property
    def late(self) -> int:
        return sum(g > LATE_GAP_MS for g in self.gaps_ms)


def pacing(packets: list[Rtp]) -> Pacing:
    """How evenly each SSRC's PCMU packets left, in capture order."""
    streams: dict[int, list[Rtp]] = {}
    for p in packets:
        if p.payload_type == PCMU:
            streams.setdefault(p.ssrc, []).append(p)
    gaps: list[float] = []
    pairs = seq_ok = ts_ok = 0
    for stream in streams.values():
        for prev, cur in itertools.pairwise(stream):
            pairs += 1
            seq_ok += (cur.sequence - prev.sequence) & 0xFFFF == 1
            step = (cur.timestamp - prev.timestamp) & 0xFFFFFFFF
            if step == FRAME_TS:
                gaps.append((cur.at - prev.at) * 1000)
                ts_ok += not cur.marker
            else:
                ts_ok += cur.marker and step > FRAME_TS and step % FRAME_TS == 0
    return Pacing(
        ssrcs=len(streams),
        packets=sum(len(s) for s in streams.values()),
        gaps_ms=gaps,
        seq_ok=seq_ok / pairs if pairs else float("nan"),
        ts_ok=ts_ok / pairs if pairs else float("nan"),
    )


# ---- what the mesh recorded of the calls (pure) -----------------------------------------


@dataclass(frozen=True)
class MeshMedia:
    greeting_first_audio_ms: list[float]  # tts's first audio of each greeting that had any
    greetings_silent: int  # greetings cancelled (the caller talked) before any audio
    finals: int  # final transcripts
    empty_finals: int  # ... with no words (stt heard no speech in the turn)
    packets_received: int  # the callers' RTP, from each call's final media_quality
    packets_lost: int
    concealed_frames: int


def mesh_media(calls: list[list[events_pb2.SessionEvent]]) -> MeshMedia:
    """The greeting's tts latency and the inbound media quality, over the calls' events."""
    first_audio: list[float] = []
    silent = finals = empty = received = lost = concealed = 0
    for events in calls:
        greetings = {
            e.response.response_id
            for e in events
            if event_name(e) == "response" and not e.response.in_reply_to
        }
        for e in events:
            kind = event_name(e)
            if kind == "speech_synthesized" and e.speech_synthesized.response_id in greetings:
                if e.speech_synthesized.first_audio_ms:
                    first_audio.append(float(e.speech_synthesized.first_audio_ms))
                else:
                    silent += 1
            elif kind == "transcript" and e.transcript.final:
                finals += 1
                empty += not e.transcript.text.strip()
            elif kind == "media_quality" and e.media_quality.final:
                received += e.media_quality.packets_received
                lost += e.media_quality.packets_lost
                concealed += e.media_quality.concealed_frames
    return MeshMedia(first_audio, silent, finals, empty, received, lost, concealed)


async def call_events(mesh: LocalMesh, rows: list[CallRow]) -> list[list[events_pb2.SessionEvent]]:
    gate = asyncio.Semaphore(EVENT_READERS)

    async def one(session_id: str) -> list[events_pb2.SessionEvent]:
        async with gate:
            return await fetch_events(mesh.nats_url, session_id, idle_s=0.5)

    return list(await asyncio.gather(*(one(r.session_id) for r in rows)))


# ---- the services' drop and error counters ----------------------------------------------


COUNTERS = {"voicemesh_dropped": "what", "voicemesh_errors": "kind"}


def counters(metrics_port: int) -> dict[str, float]:
    """One service's dropped and error counters from its /metrics, as 'dropped frame': n."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        label = COUNTERS.get(family.name)
        for sample in family.samples if label else ():
            if sample.name.endswith("_total"):
                key = f"{family.name.removeprefix('voicemesh_')} {sample.labels.get(label, '')}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


async def all_counters(mesh: LocalMesh) -> dict[str, dict[str, float]]:
    return {s.name: await asyncio.to_thread(counters, s.metrics_port) for s in mesh.services}


def counted_since(now: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, float]:
    """'media-edge dropped frame': what each counter grew by, those that grew."""
    out = {}
    for service, values in now.items():
        for key, value in values.items():
            grew = value - before.get(service, {}).get(key, 0.0)
            if grew:
                out[f"{service} {key}"] = grew
    return out


# ---- SIPp's own record -------------------------------------------------------------------


@dataclass(frozen=True)
class SippStats:
    successful: int
    failed: int
    retransmissions: int
    failures: dict[str, int]  # the Failed*(C) columns that are not zero
    setup_ms: list[float]  # INVITE -> 200 OK, per call


def sipp_stats(stat: Path, workdir: Path) -> SippStats:
    """The last row of SIPp's `-trace_stat` file and every row of its `-trace_rtt` files."""
    text = stat.read_text(errors="replace") if stat.exists() else ""
    rows = list(csv.DictReader(text.splitlines(), delimiter=";"))
    last = rows[-1] if rows else {}

    def count(column: str) -> int:
        value = last.get(column, "").strip()
        return int(value) if value.isdigit() else 0

    failures = {
        k.removesuffix("(C)"): count(k)
        for k in last
        if k and k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and count(k)
    }
    setup: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        for row in csv.DictReader(path.read_text(errors="replace").splitlines(), delimiter=";"):
            value = (row.get("response_time_ms") or "").strip()
            try:
                setup.append(float(value))
            except ValueError:
                continue
    return SippStats(
        count("SuccessfulCall(C)"), count("FailedCall(C)"), count("Retransmissions(C)"), failures, setup
    )


def complaints(text: str) -> list[str]:
    """SIPp's event lines ("<date> <time> <epoch>: Aborting call ..."), without the date."""
    out = []
    for line in text.splitlines():
        head, sep, said = line.partition(": ")
        if sep and head.count("\t") == 2 and said not in out:
            out.append(said)
    return out


# ---- one run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    calls: int
    returncode: int
    complaints: list[str]  # what SIPp reported going wrong, a line each
    stats: SippStats
    rows: list[CallRow]  # the run's calls as the mesh lists them
    wall_s: float
    cpu_s: dict[str, float]  # during the SIPp run, by service
    sipp_cpu_s: float
    machine_busy: float
    machine_stolen: float
    udp_drops: int
    after_s: float  # SIPp done -> the mesh quiet
    after_cpu_s: dict[str, float]
    pacing: Pacing
    media: MeshMedia
    counted: dict[str, float]  # the services' drop and error counters' growth

    @property
    def call_s(self) -> float:
        """Call-seconds: the listed calls' durations, or N x the run when none is listed."""
        listed = sum(r.duration_ms for r in self.rows) / 1000
        return listed or self.calls * self.wall_s


async def session_ids(mesh: LocalMesh) -> set[str]:
    events = await fetch_call_events(mesh.nats_url)
    return {r.session_id for r in calls_from_events(events, now=datetime.now(UTC))}


async def wait_quiet(mesh: LocalMesh, seen: set[str], calls: int) -> list[CallRow]:
    """Poll until this run's `calls` are listed and ended and stt has gone quiet; the rows."""
    pids = service_pids(mesh)
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    quiet_since: float | None = None
    rows: list[CallRow] = []
    before = CpuSample.take(pids)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = CpuSample.take(pids)
        stt_core = now.since(before).get("stt", 0.0) / (now.at - before.at)
        before = now
        events = await fetch_call_events(mesh.nats_url)
        rows = [r for r in calls_from_events(events, now=datetime.now(UTC)) if r.session_id not in seen]
        ended = len(rows) >= calls and not any(r.live for r in rows)
        if ended and stt_core < QUIET_CORE:
            quiet_since = quiet_since or now.at
            if now.at - quiet_since >= QUIET_FOR_S:
                break
        else:
            quiet_since = None
    return rows


@dataclass(frozen=True)
class Plan:
    hold_ms: int
    lead_s: float  # silence before the recording
    rtp_ports: tuple[int, int]


async def one_run(mesh: LocalMesh, calls: int, plan: Plan, home: Path) -> Run:
    workdir = home / f"sipp-{calls}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "caller.ulaw").write_bytes(ULAW_SILENCE * int(plan.lead_s * PHONE_RATE) + JFK.read_bytes())
    seen = await session_ids(mesh)
    pids = service_pids(mesh)
    counted = await all_counters(mesh)
    stat = workdir / "stat.csv"
    extra = ("-trace_stat", "-stf", str(stat), "-trace_rtt", "-rtt_freq", "1")
    async with capture_udp_range(plan.rtp_ports, workdir / "to_callers.pcap") as pcap:
        drops = udp_receive_drops()
        start = CpuSample.take(pids)
        sipp = await run_sipp(
            SCENARIO,
            mesh.ports.sip,
            workdir,
            calls=calls,
            pause_ms=plan.hold_ms,
            extra=extra,
            timeout_s=plan.hold_ms / 1000 + 120,
        )
        end = CpuSample.take(pids)
        drops = udp_receive_drops() - drops
    rows = await wait_quiet(mesh, seen, calls)
    quiet = CpuSample.take(pids)
    return Run(
        calls=calls,
        returncode=sipp.returncode,
        complaints=complaints(sipp.output + "\n" + sipp.errors),
        stats=sipp_stats(stat, workdir),
        rows=rows,
        wall_s=end.at - start.at,
        cpu_s=end.since(start),
        sipp_cpu_s=end.children - start.children,
        machine_busy=end.machine_since(start)[0],
        machine_stolen=end.machine_since(start)[1],
        udp_drops=drops,
        after_s=quiet.at - end.at,
        after_cpu_s=quiet.since(end),
        pacing=pacing(rtp_of(pcap)),
        media=mesh_media(await call_events(mesh, rows)),
        counted=counted_since(await all_counters(mesh), counted),
    )


# ---- printing ----------------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "-"


def print_run(run: Run, idle: dict[str, float]) -> None:
    s, n = run.stats, run.calls
    ended: dict[str, int] = {}
    for r in run.rows:
        ended[r.ended or "live"] = ended.get(r.ended or "live", 0) + 1
    print(f"\n== {n} concurrent call(s): SIPp ran {run.wall_s:.1f} s, {run.call_s:.0f} call-seconds listed")
    print(
        f"calls: SIPp exit {run.returncode}, successful {s.successful}, failed {s.failed}, "
        f"retransmissions {s.retransmissions}" + (f", failures {s.failures}" if s.failures else "")
    )
    print(
        f"       INVITE -> 200 OK ms p50 {ms(s.setup_ms, 0.5)} max {max(s.setup_ms, default=float('nan')):.1f}"
        f" ({len(s.setup_ms)} calls); the mesh listed {len(run.rows)}, ended: "
        + (", ".join(f"{k} {v}" for k, v in sorted(ended.items())) or "-")
    )
    for said in run.complaints[:COMPLAINTS_SHOWN]:
        print(f"  SIPp: {said[:COMPLAINT_CHARS]}")
    if len(run.complaints) > COMPLAINTS_SHOWN:
        print(f"  SIPp: ... {len(run.complaints) - COMPLAINTS_SHOWN} more")
    print(
        f"{'CPU':<16}{'cpu s':>8}{'% core':>9}{'idle %':>9}{'%core/call':>12}{'ms/call-s':>11}{'after s':>9}"
    )
    for name, cpu in run.cpu_s.items():
        idle_core = idle.get(name, 0.0)
        above = max(0.0, cpu - idle_core * run.wall_s)
        print(
            f"{name:<16}{cpu:>8.2f}{cpu / run.wall_s:>9.1%}{idle_core:>9.1%}"
            f"{above / run.wall_s / n:>12.2%}{above * 1000 / run.call_s:>11.1f}"
            f"{run.after_cpu_s.get(name, 0.0):>9.2f}"
        )
    print(f"{'sipp (callers)':<16}{run.sipp_cpu_s:>8.2f}{run.sipp_cpu_s / run.wall_s:>9.1%}")
    cores = os.cpu_count() or 1
    others = run.machine_busy * cores - (sum(run.cpu_s.values()) + run.sipp_cpu_s) / run.wall_s
    print(
        f"machine: {run.machine_busy:.0%} of {cores} cores busy during the run ({max(0.0, others):.2f} "
        f"cores of it neither the mesh nor SIPp: tcpdump, this bench, other users), "
        f"{run.machine_stolen:.0%} stolen by other guests; {run.udp_drops} UDP datagrams dropped on "
        f"full receive buffers (the whole host); {run.after_s:.1f} s from SIPp done to the mesh quiet"
    )
    m = run.media
    print(
        f"mesh: greeting's first tts audio ms p50 {ms(m.greeting_first_audio_ms, 0.5)} "
        f"max {max(m.greeting_first_audio_ms, default=float('nan')):.0f} "
        f"({m.greetings_silent} greetings cut before any audio); {m.finals} final transcripts "
        f"({m.empty_finals} empty); "
        f"callers' RTP in: {m.packets_received} received, {m.packets_lost} lost, "
        f"{m.concealed_frames} frames concealed"
    )
    print(
        "counters: "
        + (", ".join(f"{k} {v:.0f}" for k, v in sorted(run.counted.items())) or "no drops, no errors")
    )
    p = run.pacing
    print(
        f"RTP to the callers: {p.ssrcs} SSRCs, {p.packets} PCMU packets; gap ms in spurts "
        f"p50 {ms(p.gaps_ms, 0.5)} p95 {ms(p.gaps_ms, 0.95)} p99 {ms(p.gaps_ms, 0.99)} "
        f"max {max(p.gaps_ms, default=float('nan')):.1f}, over {LATE_GAP_MS:.0f} ms {p.late} of "
        f"{len(p.gaps_ms)}; seq +1 {p.seq_ok:.2%}, ts ok {p.ts_ok:.2%}"
    )


def print_summary(runs: list[Run], idle: dict[str, float]) -> None:
    print("\n== summary (CPU per call: above the idle mesh; greet ms: p50 of the greeting's first tts audio)")
    print(
        f"{'N':>3}{'ok':>4}{'fail':>5}{'exit':>5}{'edge %c/call':>13}{'edge ms/cs':>11}{'stt %core':>10}"
        f"{'tts %core':>10}{'machine':>8}{'greet ms':>9}{'finals':>7}{'empty':>6}{'pkts out':>9}{'gap p50':>8}"
        f"{'p95':>6}{'p99':>6}{'max':>7}{'seq ok':>8}{'ts ok':>8}"
    )
    for run in runs:
        edge = max(0.0, run.cpu_s["media-edge"] - idle.get("media-edge", 0.0) * run.wall_s)
        g = run.pacing.gaps_ms
        print(
            f"{run.calls:>3}{run.stats.successful:>4}{run.stats.failed:>5}{run.returncode:>5}"
            f"{edge / run.wall_s / run.calls:>13.2%}{edge * 1000 / run.call_s:>11.1f}"
            f"{run.cpu_s.get('stt', 0.0) / run.wall_s:>10.0%}{run.cpu_s.get('tts', 0.0) / run.wall_s:>10.0%}"
            f"{run.machine_busy:>8.0%}{ms(run.media.greeting_first_audio_ms, 0.5):>9}{run.media.finals:>7}"
            f"{run.media.empty_finals:>6}{run.pacing.packets:>9}"
            f"{ms(g, 0.5):>8}{ms(g, 0.95):>6}{ms(g, 0.99):>6}"
            f"{max(g, default=float('nan')):>7.1f}{run.pacing.seq_ok:>8.2%}{run.pacing.ts_ok:>8.2%}"
        )


async def measure_idle(mesh: LocalMesh) -> dict[str, float]:
    """Each service's share of a core while no call is up."""
    pids = service_pids(mesh)
    start = CpuSample.take(pids)
    await asyncio.sleep(IDLE_S)
    end = CpuSample.take(pids)
    return {name: cpu / (end.at - start.at) for name, cpu in end.since(start).items()}


async def bench(mesh: LocalMesh, counts: list[int], plan: Plan, home: Path) -> None:
    idle = await measure_idle(mesh)
    runs = []
    for n in counts:
        print(f"placing {n} concurrent SIPp call(s), {plan.hold_ms} ms each ...", flush=True)
        run = await one_run(mesh, n, plan, home)
        print_run(run, idle)
        runs.append(run)
    print()
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"load {load_average()}"
    )
    print(
        f"agent: restaurant; caller audio {plan.lead_s:.1f} s of silence, then {JFK.name} "
        f"({JFK.stat().st_size / PHONE_RATE:.1f} s); hold {plan.hold_ms} ms"
    )
    print_summary(runs, idle)


def port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        ports = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW-HIGH") from None
    if not 1024 <= ports[0] < ports[1] <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1024 <= LOW < HIGH <= 65535")
    return ports


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", default="20", help="comma-separated numbers of concurrent calls (default 20)"
    )
    parser.add_argument("--hold-ms", type=int, default=14_000, help="how long each call holds (SIPp's -d)")
    parser.add_argument(
        "--lead-s", type=float, default=0.0, help="silence before the recording (lets the greeting play)"
    )
    parser.add_argument(
        "--rtp-ports", type=port_range, default=(47000, 47199), help="the edge's RTP range, LOW-HIGH"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.calls.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        parser.error("--calls needs one or more positive numbers")
    if (args.rtp_ports[1] - args.rtp_ports[0] + 1) // 2 < max(counts):
        parser.error(f"--rtp-ports {args.rtp_ports} holds fewer than {max(counts)} calls (two ports each)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="voicemesh-bench-"))
    print(f"starting a mesh on free ports (logs in {home / 'logs'}) ...", flush=True)
    agents = home / "agents"
    shutil.copytree(REPO / "agents", agents)
    low, high = args.rtp_ports
    env = {"VOICEMESH_RTP_PORT_MIN": str(low), "VOICEMESH_RTP_PORT_MAX": str(high)}
    mesh = LocalMesh(home, agents, MeshPorts.free(), default_agent="restaurant", extra_env=env)
    try:
        mesh.start()
        asyncio.run(bench(mesh, counts, Plan(args.hold_ms, args.lead_s, args.rtp_ports), home))
    finally:
        for name, last_words in mesh.crashed():  # before stop(), which forgets the services
            print(f"{name} exited: {last_words}")
        mesh.stop()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
