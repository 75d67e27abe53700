"""A SIP call through a lossy, jittery network: does the held call still transcribe?

Places SIP calls (UDP, from a small caller written here: INVITE, ACK, BYE by hand) to the
local mesh and streams the JFK recording (/work/shared/assets/audio/jfk8k.ulaw, 11 s of
8 kHz μ-law) as RTP through the impairment relay (cli/impair.py) in front of the edge's RTP
port. The edge receives it through its adaptive jitter buffer (edge/sip/jitter.py:
reordering, loss concealment, depth within VOICEMESH_SIP_JITTER_MIN_MS/_MAX_MS). Two conditions, `--runs` calls
each (relay seeds 1..N):

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
from typing import cast

import jiwer
from figures import cpu_model, load_average
from prometheus_client.parser import text_string_to_metric_families

from voicemesh.cli.calls_cmd import calls_from_events, fetch_call_events
from voicemesh.cli.events_cmd import iter_events
from voicemesh.cli.impair import Impairment, LaneStats, UdpImpairmentRelay
from voicemesh.cli.localmesh import LocalMesh, MeshError, MeshPorts
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
SIP_QUEUE = 64
LATE_S = 0.040  # a caller packet this late is a stall on the caller's side, not the network's
CONCEALED_METRIC = "voicemesh_media_frames_concealed"


class BenchError(RuntimeError):
    """A call could not be placed or measured; the message says which step."""


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis))) if normalise(hypothesis) else 1.0


# ---- SIP by hand ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]
    body: str

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        return cls(lines[0], headers, body)

    def header(self, name: str) -> str:
        return next((v for n, v in self.headers if n.lower() == name.lower()), "")

    @property
    def status(self) -> int:
        """The response's status code; 0 for a request."""
        parts = self.first_line.split()
        return int(parts[1]) if self.first_line.startswith("SIP/2.0") and len(parts) > 1 else 0

    @property
    def method(self) -> str:
        """The request's method, or the CSeq method of a response."""
        return self.header("CSeq").split()[-1].upper() if self.status else self.first_line.split()[0].upper()


class SipLeg(asyncio.DatagramProtocol):
    """The caller's SIP socket: what arrives goes to a bounded queue (drops counted)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue(SIP_QUEUE)
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self.inbox.put_nowait(SipMessage.parse(data))
        except asyncio.QueueFull:
            self.dropped += 1

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode())


def offer_sdp(media: Address) -> str:
    host, port = media
    return (
        f"v=0\r\no=bench 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def answered_media(sdp: str) -> Address:
    """(host, port) of the answer's audio stream; BenchError if it names none."""
    host = re.search(r"^c=IN IP4 (\S+)", sdp, re.MULTILINE)
    port = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    if host is None or port is None:
        raise BenchError(f"the 200 OK's SDP names no audio address: {sdp!r}")
    return host.group(1), int(port.group(1))


@dataclass
class Dialog:
    """What the caller's requests in one call share."""

    to_uri: str  # whom the call is to (the INVITE's request-URI)
    local: Address  # the caller's SIP socket
    target: str = ""  # the request-URI of requests in the call: the edge's Contact, once answered
    call_id: str = field(default_factory=lambda: f"bench-{secrets.token_hex(8)}")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    to_tag: str = ""

    def new_call(self) -> None:
        self.call_id, self.from_tag = f"bench-{secrets.token_hex(8)}", secrets.token_hex(4)

    def request(self, method: str, cseq: int, body: str = "") -> str:
        host, port = self.local
        to = f"<{self.to_uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            f"{method} {self.target or self.to_uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 70",
            f"From: <sip:bench@{host}:{port}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:bench@{host}:{port}>",
            "User-Agent: voicemesh-bench",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body


def ack_for_refusal(invite: str, response: SipMessage) -> str:
    """The ACK of a non-2xx final response: the INVITE's own transaction (RFC 3261 §17.1.1.3)."""
    head = invite.split("\r\n\r\n", 1)[0].split("\r\n")
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "call-id", "max-forwards")]
    cseq = response.header("CSeq").split()[0]
    lines = [head[0].replace("INVITE", "ACK", 1), *keep, f"To: {response.header('To')}", f"CSeq: {cseq} ACK"]
    return "\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n"


def ok_for(request: SipMessage) -> str:
    """200 OK to the edge's request (its BYE)."""
    keep = [f"{n}: {v}" for n, v in request.headers if n.lower() in ("via", "from", "to", "call-id", "cseq")]
    return "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]) + "\r\n\r\n"


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


async def invite(sip: SipLeg, dialog: Dialog, sdp: str) -> SipMessage:
    """Send the INVITE; the 200 OK (ACKed). A 503 (the edge's one RTP port not yet free
    after the last call) is ACKed and tried again under a new Call-ID."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_TIMEOUT_S
    while True:
        request = dialog.request("INVITE", 1, sdp)
        sip.send(request)
        while True:
            try:
                msg = await asyncio.wait_for(sip.inbox.get(), max(0.01, deadline - loop.time()))
            except TimeoutError:
                raise BenchError(f"no answer to the INVITE in {ANSWER_TIMEOUT_S:.0f} s") from None
            if msg.header("Call-ID") != dialog.call_id or msg.method != "INVITE" or msg.status < 200:
                continue
            if msg.status < 300:
                dialog.to_tag = msg.header("To").partition(";tag=")[2].split(";")[0]
                contact = re.search(r"<([^>]+)>", msg.header("Contact"))
                dialog.target = contact.group(1) if contact else ""
                sip.send(dialog.request("ACK", 1))
                return msg
            sip.send(ack_for_refusal(request, msg))
            if msg.status != 503 or loop.time() > deadline:
                raise BenchError(f"the INVITE was refused: {msg.first_line}")
            break
        await asyncio.sleep(0.5)
        dialog.new_call()


async def signalling(sip: SipLeg, dialog: Dialog, hung_up: asyncio.Event, bye_done: asyncio.Event) -> None:
    """While the call is up: the edge's BYE is answered, a repeated 200 OK re-ACKed, the
    answer to our BYE noted."""
    while True:
        msg = await sip.inbox.get()
        if msg.header("Call-ID") != dialog.call_id:
            continue
        if msg.status == 0 and msg.method == "BYE":
            sip.send(ok_for(msg))
            hung_up.set()
        elif msg.status >= 200 and msg.method == "INVITE":
            sip.send(dialog.request("ACK", 1))
        elif msg.status >= 200 and msg.method == "BYE":
            bye_done.set()


async def one_call(
    mesh: LocalMesh, agent: str, condition: Condition, seed: int, edge_rtp: Address
) -> CallResult:
    loop = asyncio.get_running_loop()
    relay = UdpImpairmentRelay(
        edge_rtp, upstream=condition.upstream, downstream=condition.downstream, seed=seed
    )
    caller_side = await relay.start()
    sip_transport, sip = await loop.create_datagram_endpoint(
        SipLeg, local_addr=(HOST, 0), remote_addr=(HOST, mesh.ports.sip)
    )
    rtp_transport, drain = await loop.create_datagram_endpoint(RtpDrain, remote_addr=caller_side)
    dialog = Dialog(f"sip:{agent}@{HOST}:{mesh.ports.sip}", sip_transport.get_extra_info("sockname")[:2])
    watch = SessionWatch()
    sender = RtpSender(rtp_transport)
    tasks: list[asyncio.Task[None]] = []
    try:
        ok = await invite(sip, dialog, offer_sdp(relay.target_side_address))
        answered = answered_media(ok.body)
        if answered != edge_rtp:
            raise BenchError(f"the edge answered with RTP at {answered}, not the pinned {edge_rtp}")
        hung_up, bye_done = asyncio.Event(), asyncio.Event()
        tasks.append(loop.create_task(sender.run()))
        tasks.append(loop.create_task(signalling(sip, dialog, hung_up, bye_done)))
        session_id = await session_of(mesh.nats_url, dialog.call_id)
        tasks.append(loop.create_task(follow(mesh.nats_url, session_id, watch)))
        await wait_until(lambda: watch.greeted, GREETING_MAX_S, "the greeting")
        sender.play(JFK.read_bytes() + SILENCE * round(TRAILING_SILENCE_S / FRAME_S))
        await sender.drained.wait()
        await wait_until(lambda: watch.settled(loop.time()), TRANSCRIPT_TIMEOUT_S, "the final transcript")
        await cancel_and_wait(tasks.pop(0))  # the caller stops sending, then hangs up
        if not hung_up.is_set():
            bye = dialog.request("BYE", 2)
            for _ in range(4):  # sent again until answered
                sip.send(bye)
                if await wait_until(lambda: bye_done.is_set() or hung_up.is_set(), 0.5, "the BYE's answer"):
                    break
        await wait_until(lambda: watch.quality is not None, QUALITY_TIMEOUT_S, "the final media_quality")
    finally:
        await cancel_and_wait(*tasks)
        sip_transport.close()
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
