"""A SIP call through a lossy, jittery network: does the held call still transcribe?

Places SIP calls (UDP, with the project's caller voicemesh.cli.sipcaller: INVITE, ACK,
BYE) to the local mesh and streams the JFK recording (/work/shared/assets/audio/jfk8k.ulaw,
11 s of 8 kHz μ-law) as RTP through the impairment relay (cli/impair.py) in front of the
edge's RTP port. The edge receives it through its adaptive jitter buffer
(edge/sip/jitter.py: reordering, loss concealment, depth within
VOICEMESH_SIP_JITTER_MIN_MS/_MAX_MS). Two conditions, `--runs` calls each (relay seeds 1..N):

- clean: the relay with no impairment;
- impaired: 5 % random loss and a 40 ms jitter spike on 2 % of packets (one a second at
  50 packets a second), each way.

The caller offers PCMU/8000 and telephone-event with `c=`/`m=` naming the relay's
target-side address, so even the edge's first packets go through the relay. A relay's
target is fixed when it starts and the offer must already name the relay, so the edge is
given a one-port RTP range (VOICEMESH_RTP_PORT_MIN/MAX) and the bench checks that the 200
OK's `m=audio` names that port. The caller sends μ-law silence until the greeting has
played (the session's first `playout_finished`), then the recording (20 ms packets on
absolute deadlines of the loop's monotonic clock), then silence until the final transcript
is in, and hangs up. The agent is tests/e2e/agents/listener.yaml, one statement a turn, with
a longer endpoint silence (`--endpoint-ms`): with its own 1.5 s the turn ends in JFK's pause
after "Americans" even on the clean path, and it hangs up after reading the fragment back.

For each call it prints the WER of the joined final transcripts against the JFK text, the
relay's upstream counts, the session's final `media_quality` event and how late the
caller's own packets left (a caller starved of CPU stalls like a network: the edge then
supplies silence, counted in `concealed`); then the figures per condition, the conditions
taking turns call by call, and the change in the edge's
`voicemesh_media_frames_concealed_total{transport="sip"}`.
Starts its own mesh on free ports. Prints figures; never fails on them.

    .venv/bin/python bench/sip_network.py --runs 3
    .venv/bin/python bench/sip_network.py --runs 3 --jitter-max-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jiwer
from figures import cpu_model, load_average
from prometheus_client.parser import text_string_to_metric_families

from voicemesh.cli.calls_cmd import calls_from_events, fetch_call_events
from voicemesh.cli.events_cmd import iter_events
from voicemesh.cli.impair import Impairment, LaneStats, UdpImpairmentRelay
from voicemesh.cli.localmesh import LocalMesh, MeshError, MeshPorts
from voicemesh.cli.sipcaller import SipCallFailed, SipDialog, SipUac
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.events import event_name
from voicemesh.v1 import events_pb2

REPO = Path(__file__).resolve().parents[1]
JFK = REPO.parent / "shared" / "assets" / "audio" / "jfk8k.ulaw"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
LISTENER = REPO / "tests" / "e2e" / "agents" / "listener.yaml"
# The listener waits 1.5 s of silence; over SIP (8 kHz) JFK's pause after "Americans" reaches
# that on the clean path too, and the listener then hangs up: the bench's copy waits longer.
LISTENER_ENDPOINT_MS = 2500
HOST = "127.0.0.1"
Address = tuple[str, int]

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
FRAME_S = 0.020
PCMU = 0
SILENCE = b"\xff" * FRAME_BYTES
TRAILING_SILENCE_S = 2.0
GREETING_MAX_S = 15.0
ANSWER_TIMEOUT_S = 30.0
SETTLE_S = 1.0  # a final transcript with nothing after it for this long: the turn is in
TRANSCRIPT_TIMEOUT_S = 40.0  # after the recording was sent
QUALITY_TIMEOUT_S = 10.0  # after the BYE
LATE_S = 0.040  # a caller packet this late is a stall on the caller's side, not the network's
CONCEALED_METRIC = "voicemesh_media_frames_concealed"


class BenchError(RuntimeError):
    """A call could not be placed or measured; the message says which step."""


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis))) if normalise(hypothesis) else 1.0


# ---- RTP -----------------------------------------------------------------------------------


class RtpSender:
    """The caller's RTP: one PCMU packet every 20 ms on absolute deadlines of the loop's
    clock (seq +1, ts +160, the marker on the first), playing what is queued, else silence."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._queued: deque[bytes] = deque()
        self.drained = asyncio.Event()
        self.sent = 0
        self.max_late_s = 0.0  # the latest a packet left after its deadline
        self.late = 0  # packets that left more than LATE_S after their deadline

    def play(self, ulaw: bytes) -> None:
        ulaw += SILENCE[: -len(ulaw) % FRAME_BYTES]  # a whole last frame
        self._queued.extend(ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES))
        self.drained.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            payload = self._queued.popleft() if self._queued else SILENCE
            if not self._queued:
                self.drained.set()
            marker = 0x80 if self.sent == 0 else 0
            header = struct.pack("!BBHII", 0x80, marker | PCMU, self._seq, self._ts, self._ssrc)
            self._transport.sendto(header + payload)
            late = loop.time() - (start + self.sent * FRAME_S)
            self.max_late_s = max(self.max_late_s, late)
            self.late += late > LATE_S
            self.sent += 1
            self._seq = (self._seq + 1) & 0xFFFF
            self._ts = (self._ts + FRAME_BYTES) & 0xFFFFFFFF
            await asyncio.sleep(max(0.0, start + self.sent * FRAME_S - loop.time()))


class RtpDrain(asyncio.DatagramProtocol):
    """The caller's RTP socket: what the edge sends back (through the relay) is read and
    counted, so nothing queues up."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received += 1

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP from a port not listening yet: UDP carries on


# ---- the session's events ------------------------------------------------------------------


@dataclass
class SessionWatch:
    """The session's events folded into what the bench waits for (no I/O: fed events and
    the time they came)."""

    greeted: bool = False  # the agent's first words (the greeting) have played out
    finals: list[str] = field(default_factory=list)
    last_transcript_at: float | None = None
    last_was_final: bool = False
    replied: bool = False  # a reply to the caller's turn came after the last final
    quality: events_pb2.MediaQuality | None = None

    def take(self, event: events_pb2.SessionEvent, now: float) -> None:
        name = event_name(event)
        if name == "transcript":
            self.last_transcript_at, self.last_was_final = now, event.transcript.final
            if event.transcript.final:
                self.finals.append(event.transcript.text)
                self.replied = False
        elif name == "response" and event.response.in_reply_to and self.last_was_final:
            self.replied = True
        elif name == "playout_finished":
            self.greeted = True
        elif name == "media_quality" and event.media_quality.final:
            self.quality = event.media_quality

    def settled(self, now: float) -> bool:
        """The caller's words are in: a final, then a reply or nothing for SETTLE_S."""
        if not self.finals or not self.last_was_final or self.last_transcript_at is None:
            return False
        return self.replied or now - self.last_transcript_at >= SETTLE_S


async def follow(nats_url: str, session_id: str, watch: SessionWatch) -> None:
    loop = asyncio.get_running_loop()
    async for event in iter_events(nats_url, session_id, idle_s=None):
        watch.take(event, loop.time())


async def session_of(nats_url: str, call_id: str, timeout_s: float = 15.0) -> str:
    """The session id of the call whose SIP Call-ID is `call_id` (polled with a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        rows = calls_from_events(await fetch_call_events(nats_url, idle_s=0.5), now=datetime.now(UTC))
        found = [r.session_id for r in rows if r.carrier_call_id == call_id]
        if found:
            return found[0]
        if loop.time() > deadline:
            raise BenchError(f"no session for Call-ID {call_id} after {timeout_s:.0f} s")
        await asyncio.sleep(0.3)


async def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> bool:
    """Poll `check()` every 50 ms until it holds or `timeout_s` pass; False (and a note) then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            print(f"    (gave up waiting for {what} after {timeout_s:.0f} s)", flush=True)
            return False
        await asyncio.sleep(0.05)
    return True


# ---- one call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    name: str
    upstream: Impairment
    downstream: Impairment


@dataclass(frozen=True)
class CallResult:
    condition: str
    seed: int
    wer: float
    said: str
    upstream: LaneStats
    quality: events_pb2.MediaQuality | None
    late_packets: int  # sent more than LATE_S after their deadline (the caller stalled)
    max_late_ms: float
    heard_back: int  # RTP packets the edge sent that reached the caller


async def place_call(uac: SipUac, offer_rtp: Address) -> tuple[SipDialog, Address]:
    """The call placed with an offer naming `offer_rtp`, answered (the 200 OK ACKed), and
    where the answer wants RTP. A 503 (the edge's one RTP port not yet free after the last
    call) is tried again under a new Call-ID until ANSWER_TIMEOUT_S; anything else failing
    is a BenchError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_TIMEOUT_S
    while True:
        try:
            return await uac.call(0, offer_rtp)
        except SipCallFailed as exc:
            if exc.status != 503 or loop.time() > deadline:
                raise BenchError(str(exc)) from None
        await asyncio.sleep(0.5)


async def one_call(
    mesh: LocalMesh, agent: str, condition: Condition, seed: int, edge_rtp: Address
) -> CallResult:
    loop = asyncio.get_running_loop()
    relay = UdpImpairmentRelay(
        edge_rtp, upstream=condition.upstream, downstream=condition.downstream, seed=seed
    )
    caller_side = await relay.start()
    uac = SipUac((HOST, mesh.ports.sip), agent, user_agent="voicemesh-bench")
    await uac.start()
    rtp_transport, drain = await loop.create_datagram_endpoint(RtpDrain, remote_addr=caller_side)
    watch = SessionWatch()
    sender = RtpSender(rtp_transport)
    tasks: list[asyncio.Task[None]] = []
    try:
        dialog, answered = await place_call(uac, relay.target_side_address)
        if answered != edge_rtp:
            await uac.bye(dialog)
            raise BenchError(f"the edge answered with RTP at {answered}, not the pinned {edge_rtp}")
        tasks.append(loop.create_task(sender.run()))
        session_id = await session_of(mesh.nats_url, dialog.call_id)
        tasks.append(loop.create_task(follow(mesh.nats_url, session_id, watch)))
        await wait_until(lambda: watch.greeted, GREETING_MAX_S, "the greeting")
        sender.play(JFK.read_bytes() + SILENCE * round(TRAILING_SILENCE_S / FRAME_S))
        await sender.drained.wait()
        await wait_until(lambda: watch.settled(loop.time()), TRANSCRIPT_TIMEOUT_S, "the final transcript")
        await cancel_and_wait(tasks.pop(0))  # the caller stops sending, then hangs up
        if not await uac.bye(dialog):  # at once if the edge hung up first (its BYE answered)
            print("    (the edge did not answer our BYE)", flush=True)
        await wait_until(lambda: watch.quality is not None, QUALITY_TIMEOUT_S, "the final media_quality")
    finally:
        await cancel_and_wait(*tasks)
        uac.close()
        rtp_transport.close()
        await relay.aclose()
    said = " ".join(watch.finals)
    return CallResult(
        condition.name,
        seed,
        wer(JFK_TEXT, said),
        said,
        relay.stats.upstream,
        watch.quality,
        sender.late,
        sender.max_late_s * 1000,
        drain.received,
    )


# ---- the figures ---------------------------------------------------------------------------


def concealed_total(metrics_port: int) -> float:
    """The edge's voicemesh_media_frames_concealed_total{transport="sip"}, from /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == CONCEALED_METRIC
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("transport") == "sip"
    )


def print_call(i: int, runs: int, r: CallResult, show_text: bool) -> None:
    q = r.quality
    media = (
        f"received {q.packets_received}, lost {q.packets_lost}, jitter {q.jitter_ms:.1f} ms, "
        f"concealed {q.concealed_frames}"
        if q is not None
        else "no final media_quality"
    )
    up = r.upstream.impairment
    print(
        f"  {r.condition:<8} {i}/{runs} seed {r.seed}: WER {r.wer:.3f} | relay up: {up.packets_in} in, "
        f"{up.dropped} dropped, {up.delayed} delayed, {up.spikes} spikes | edge: {media} | "
        f"caller: {r.late_packets} sent >{LATE_S * 1000:.0f} ms late (max {r.max_late_ms:.0f} ms), "
        f"{r.heard_back} back",
        flush=True,
    )
    if show_text:
        print(f"           heard: {r.said!r}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: list[CallResult], concealed_delta: dict[str, float], setup: str) -> None:
    names = list(dict.fromkeys(r.condition for r in results))
    by = {n: [r for r in results if r.condition == n] for n in names}

    def column(fn: Callable[[list[CallResult]], object]) -> str:
        return "".join(f"{fn(by[n])!s:>12}" for n in names)

    def quality(rs: list[CallResult], field_name: str) -> float:
        return median([getattr(r.quality, field_name) for r in rs if r.quality is not None])

    print()
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, load {load_average()}"
    )
    print(setup)
    print()
    print(f"{'figure':<34}" + "".join(f"{n:>12}" for n in names))
    print(f"{'calls':<34}" + column(lambda rs: len(rs)))
    print(f"{'WER median':<34}" + column(lambda rs: f"{median([r.wer for r in rs]):.3f}"))
    print(f"{'WER max':<34}" + column(lambda rs: f"{max(r.wer for r in rs):.3f}"))
    print(
        f"{'relay dropped (up) median':<34}"
        + column(lambda rs: f"{median([r.upstream.impairment.dropped for r in rs]):.0f}")
    )
    print(f"{'packets lost median (edge)':<34}" + column(lambda rs: f"{quality(rs, 'packets_lost'):.0f}"))
    print(
        f"{'concealed frames median (edge)':<34}"
        + column(lambda rs: f"{quality(rs, 'concealed_frames'):.0f}")
    )
    print(f"{'jitter ms median (edge)':<34}" + column(lambda rs: f"{quality(rs, 'jitter_ms'):.1f}"))
    print(
        f"{'frames_concealed_total{sip} delta':<34}"
        + "".join(f"{concealed_delta.get(n, 0):>12.0f}" for n in names)
    )
    if {"clean", "impaired"} <= set(by):
        clean = median([r.wer for r in by["clean"]])
        impaired = median([r.wer for r in by["impaired"]])
        ratio = f"{impaired / clean:.2f}" if clean > 0 else "n/a (clean WER is 0)"
        print(f"\nimpaired / clean WER (medians): {ratio}; difference {impaired - clean:+.3f}")


# ---- main ----------------------------------------------------------------------------------


def free_rtp_port() -> int:
    """An even port whose odd neighbour (RTCP) is free too, for the edge's one-port range."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1] & ~1
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
            ):
                a.bind((HOST, port))
                b.bind((HOST, port + 1))
                return port
        except OSError:
            continue
    raise BenchError("no free even/odd UDP port pair for the edge's RTP")


async def run(
    mesh: LocalMesh, agent: str, conditions: list[Condition], runs: int, edge_rtp: Address, show_text: bool
) -> tuple[list[CallResult], dict[str, float]]:
    """The calls, the conditions taking turns (so neither has the mesh's first call), and the
    edge's concealed-frames counter's increase per condition."""
    metrics_port = mesh.ports.metrics["media-edge"]
    await fetch_call_events(mesh.nats_url)  # NATS's client imported before any call is timed
    results: list[CallResult] = []
    delta = dict.fromkeys((c.name for c in conditions), 0.0)
    for seed in range(1, runs + 1):
        for condition in conditions:
            before = await asyncio.to_thread(concealed_total, metrics_port)
            result = await one_call(mesh, agent, condition, seed, edge_rtp)
            delta[condition.name] += await asyncio.to_thread(concealed_total, metrics_port) - before
            results.append(result)
            print_call(seed, runs, result, show_text)
    return results, delta


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="calls per condition (relay seeds 1..N)")
    parser.add_argument("--agent", default="listener", help="the agent called (listener: tests/e2e/agents)")
    parser.add_argument("--loss", type=float, default=0.05, help="impaired: loss probability each way")
    parser.add_argument(
        "--spike-prob", type=float, default=0.02, help="impaired: probability a packet starts a spike"
    )
    parser.add_argument(
        "--spike-ms", type=float, default=40.0, help="impaired: how long a spike stalls the link"
    )
    parser.add_argument(
        "--jitter-max-ms", type=int, help="VOICEMESH_SIP_JITTER_MAX_MS for the edge (its default: 200)"
    )
    parser.add_argument(
        "--endpoint-ms",
        type=int,
        default=LISTENER_ENDPOINT_MS,
        help="the listener's endpoint silence (its own 1500 ms ends the turn in JFK's pause over SIP)",
    )
    parser.add_argument("--transcripts", action="store_true", help="print what each call was heard saying")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    impaired = Impairment(loss=args.loss, spike_prob=args.spike_prob, spike_ms=args.spike_ms)
    conditions = [Condition("clean", Impairment(), Impairment()), Condition("impaired", impaired, impaired)]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="voicemesh-bench-"))
    agents = home / "agents"
    shutil.copytree(REPO / "agents", agents)
    listener = re.sub(
        r"endpoint_silence_ms: \d+", f"endpoint_silence_ms: {args.endpoint_ms}", LISTENER.read_text()
    )
    (agents / LISTENER.name).write_text(listener)
    rtp_port = free_rtp_port()
    env = {"VOICEMESH_RTP_PORT_MIN": str(rtp_port), "VOICEMESH_RTP_PORT_MAX": str(rtp_port + 1)}
    if args.jitter_max_ms is not None:
        env["VOICEMESH_SIP_JITTER_MAX_MS"] = str(args.jitter_max_ms)
    print(f"starting a mesh on free ports (logs in {home / 'logs'}) ...", flush=True)
    print(f"impaired, each way: {impaired}", flush=True)
    mesh = LocalMesh(home, agents, MeshPorts.free(), default_agent=args.agent, extra_env=env)
    try:
        mesh.start()
        results, delta = asyncio.run(
            run(mesh, args.agent, conditions, args.runs, (HOST, rtp_port), args.transcripts)
        )
    except (BenchError, MeshError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        mesh.stop()
    frames = args.jitter_max_ms if args.jitter_max_ms is not None else "200 (default)"
    endpoint = f", endpoint silence {args.endpoint_ms} ms" if args.agent == "listener" else ""
    report(results, delta, f"agent: {args.agent}{endpoint}; edge VOICEMESH_SIP_JITTER_MAX_MS={frames}")
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
