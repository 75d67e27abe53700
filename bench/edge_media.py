"""Media-edge capacity: CPU per call, and how many concurrent calls one edge process holds;
and the latency the SIP jitter buffer adds under network jitter.

Starts real Valkey and NATS, `bench/fakepeers.py` (fake, cheap stand-ins for the router,
stt, reasoning and tts: no models, so the figures are the edge's alone) and ONE real edge
process (`python -m voicemesh.edge`, SIP on a free UDP/TCP port and its RTP on a free range
below the ephemeral ports). Then, for each transport (native WebSocket, Twilio Media
Streams, SIP), it steps the number of concurrent calls a load generator in this process
places. Every call streams the caller fixtures (tests/e2e/fixtures/caller_*.wav), each
followed by 1.5 s of silence, in a loop, one 20 ms frame per call on one shared ticker;
what the edge sends back is read (Twilio marks are echoed) and discarded.

SIP calls come from `voicemesh.cli.sipcaller` (no SIPp: their packets must ride the same
ticker): INVITE to `sip:bench@<edge>` (the request-URI's user names the agent) offering
PCMU/0 and telephone-event/101 at 20 ms on the call's own RTP socket, retransmitted on
T1 = 0.5 s doubling until anything comes back; the 200 OK is ACKed, its SDP says where RTP
goes; then one 12-byte-header μ-law RTP packet per call per tick (the fixtures resampled to
8 kHz and encoded once, up front); the edge's BYE is answered, ours sent at the end. A call
that gets a final non-2xx, or no 200 in 15 s, has failed. Its "replies" are the agent's
talk spurts (RTP packets with the marker bit) that reached the caller.

Each step warms up 3 s, then measures over `--seconds`:
- the edge process's CPU (utime + stime from /proc) per second, and per call;
- frame processing p50/p95/p99 from the edge's `voicemesh_frame_processing_seconds`
  histogram under the transport's label (native, twilio, sip; the difference of two
  scrapes, interpolated within buckets);
- frames the edge processed per second against calls x 50 (is it keeping up?);
- the generator's own lateness (the last frame of each tick vs. its due time) and CPU, and
  the fake peers' CPU, so a saturated generator or machine is visible.

Stepping stops at the first step with p99 >= 5 ms or fewer than 95 % of the frames due.

`--jitter 0,20,40` (levels in ms; `--jitter` alone means these) measures the SIP jitter
buffer instead, or as well when `--transport` is also given. Per level, `--jitter-calls`
SIP calls (3 by default) run concurrently, each with its caller's RTP sent through its own
`voicemesh.cli.impair.UdpImpairmentRelay` with `Impairment(jitter_ms=LEVEL)` upstream
(uniform extra delay in [0, LEVEL] ms per packet, seeded `--seed` + the call's index) and
none downstream. The offer names the caller's own RTP socket; once its first packet
arrives through the relay, the edge's symmetric RTP latches onto the relay, which then
carries both directions. Per level, from the edge's /metrics:
- `voicemesh_jitter_buffer_delay_seconds{transport="sip"}` p50/p95/p99 (an RTP packet's
  arrival at the edge to its audio leaving the jitter buffer) and
  `voicemesh_jitter_buffer_depth_seconds` p50/p95, over the `--seconds` window after a 3 s
  warm-up ("not exported" when the edge has no such metric);
- the edge's own RFC 3550 jitter estimate (`voicemesh_media_jitter_seconds`) p50, to show
  the relay's jitter reached it;
- `voicemesh_media_frames_{concealed,late,lost}_total{transport="sip"}` and the SIP frames
  processed, over the whole calls (scraped before they start and after the edge has ended
  them: the SIP port folds its counts into the metrics once a second and at the end of the
  call; loss is RFC 3550's, packets expected by sequence number less those received, so a
  reordered packet still in flight when the call ends counts as lost);
- the relays' own counts (packets in, delayed, sent, overflowed).

Prints figures; never fails on time. `--json FILE` also writes them.

    .venv/bin/python bench/edge_media.py --transport both --seconds 20      # native, twilio
    .venv/bin/python bench/edge_media.py --transport sip --steps 1,5,10 --seconds 5
    .venv/bin/python bench/edge_media.py --transport all --seconds 20       # native, twilio, sip
    .venv/bin/python bench/edge_media.py --jitter 0,20,40 --seconds 10 --jitter-calls 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
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
from voicemesh.cli.impair import Impairment, LaneStats, UdpImpairmentRelay
from voicemesh.cli.sipcaller import SipCallFailed, SipDialog, SipUac
from voicemesh.edge.twilio_signature import compute_signature
from voicemesh.mesh.access import GRPC_IDENTITIES
from voicemesh.mesh.certs import write_mesh_tls
from voicemesh.mesh.grpcutil import check_health
from voicemesh.mesh.localservers import LocalServer, die_with_parent, free_port, nats_server, valkey_server
from voicemesh.mesh.mtls import MeshTls

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
FAKEPEERS = Path(__file__).resolve().parent / "fakepeers.py"
DEFAULT_STEPS = (1, 5, 10, 20, 40, 60, 80, 100)
DEFAULT_JITTER_MS = (0.0, 20.0, 40.0)
# the edge metrics' transport label (voicemesh.edge.native/twilio/sip.port LABEL)
TRANSPORT_LABEL = {"native": "native", "twilio": "twilio", "sip": "sip"}
TRANSPORTS = {"both": ("native", "twilio"), "all": ("native", "twilio", "sip")}
TICK_S = 0.020
PAUSE_S = 1.5
WARMUP_S = 3.0
P99_LIMIT_MS = 5.0
KEEP_UP = 0.95
OPEN_AT_ONCE = 10  # calls set up concurrently while a step ramps up
READY_TIMEOUT_S = 15.0
ULAW_FRAME = 160  # 20 ms of 8 kHz μ-law
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
Address = tuple[str, int]
SIP_AGENT = "bench"  # the request-URI's user: an agent name (fakepeers serves any)
PCMU = 0
RTP_SPARE_PORTS = 16  # even RTP ports beyond the largest step, for a port busy elsewhere
# What the jitter mode reads, for transport="sip" (absent ones print "not exported").
JITTER_DELAY = "voicemesh_jitter_buffer_delay_seconds"
JITTER_DEPTH = "voicemesh_jitter_buffer_depth_seconds"
MEDIA_JITTER = "voicemesh_media_jitter_seconds"
SIP_HISTOGRAMS = (JITTER_DELAY, JITTER_DEPTH, MEDIA_JITTER)
CONCEALED = "voicemesh_media_frames_concealed_total"
LATE = "voicemesh_media_frames_late_total"
LOST = "voicemesh_media_frames_lost_total"
SIP_COUNTERS = (CONCEALED, LATE, LOST)


# ---- the caller audio ------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """The caller audio loop, pre-encoded once for every transport."""

    pcm: list[bytes]  # 640-byte PCM16 16 kHz frames (native)
    ulaw_b64: list[str]  # base64 of 160-byte μ-law 8 kHz frames (Twilio)
    ulaw: list[bytes]  # the same 160-byte μ-law 8 kHz frames, raw (SIP's RTP payloads)
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
    raw = [ulaw[i : i + ULAW_FRAME] for i in range(0, len(ulaw) - ULAW_FRAME + 1, ULAW_FRAME)]
    chunks = [base64.b64encode(chunk).decode() for chunk in raw]
    n = min(len(frames), len(chunks))
    return Script(frames[:n], chunks[:n], raw[:n], speech_s)


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
        self.callers: list[Caller | SipCaller] = []
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
                if isinstance(caller, SipCaller):
                    caller.send_frame()
                    self.sent += 1
                    continue
                try:
                    await caller.ws.send(caller.next_message())
                    self.sent += 1
                except ConnectionClosed:
                    self.mark_lost(caller)
            self.late_ms.append((loop.time() - due) * 1000)

    def reply_heard(self) -> None:
        self.replies += 1

    def mark_lost(self, caller: Caller | SipCaller) -> None:
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


async def hang_up(caller: Caller | SipCaller) -> None:
    if isinstance(caller, SipCaller):
        await caller.hang_up()
        return
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


# ---- SIP callers (voicemesh.cli.sipcaller places the calls; RTP rides the ticker) -------


class RtpDrain(asyncio.DatagramProtocol):
    """A caller's RTP socket: what the edge sends is read and dropped; the agent's talk
    spurts (PCMU packets with the marker bit) are counted."""

    def __init__(self, on_spurt: Callable[[], None]) -> None:
        self.on_spurt = on_spurt
        self.received = 0

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received += 1
        if len(data) >= 12 and data[0] >> 6 == 2 and data[1] == 0x80 | PCMU:
            self.on_spurt()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP for a packet we sent: UDP carries on


class SipCaller:
    """One SIP call on the shared ticker: its dialog, its RTP socket, where its packets go
    (the edge's RTP port, or a relay in front of it) and where it is in the script."""

    def __init__(
        self,
        uac: SipUac,
        dialog: SipDialog,
        rtp: asyncio.DatagramTransport,
        drain: RtpDrain,
        edge_rtp: Address,
        frames: list[bytes],
        offset: int,
    ) -> None:
        self.uac, self.dialog, self.rtp, self.drain = uac, dialog, rtp, drain
        self.edge_rtp = edge_rtp
        self.send_to = edge_rtp
        self.frames = frames
        self.pos = offset % len(frames)
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.marker = 0x80  # on the first packet only: the stream starts once
        self.alive = True
        self.stopping = False
        self.reader: asyncio.Task[None] | None = None  # (RTP is read by `drain`)

    def send_frame(self) -> None:
        """The next 20 ms as one RTP packet (seq + 1, timestamp + 160)."""
        header = struct.pack("!BBHII", 0x80, self.marker | PCMU, self.seq, self.ts, self.ssrc)
        self.rtp.sendto(header + self.frames[self.pos], self.send_to)
        self.marker = 0
        self.pos = (self.pos + 1) % len(self.frames)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + ULAW_FRAME) & 0xFFFFFFFF

    async def hang_up(self) -> None:
        self.stopping = True
        self.alive = False
        try:
            if not self.dialog.remote_bye.is_set():
                await self.uac.bye(self.dialog)
        finally:
            self.uac.dialogs.pop(self.dialog.call_id, None)
            self.rtp.close()


async def open_sip_call(uac: SipUac, script: Script, index: int, gen: LoadGenerator) -> SipCaller:
    """Call `index`, answered: its RTP socket bound, the 200 OK ACKed. CallFailed if not."""
    loop = asyncio.get_running_loop()
    rtp, drain = await loop.create_datagram_endpoint(lambda: RtpDrain(gen.reply_heard), local_addr=(HOST, 0))
    try:
        dialog, edge_rtp = await uac.call(index, rtp.get_extra_info("sockname")[:2])
    except BaseException as exc:
        rtp.close()
        if isinstance(exc, CallFailed | SipCallFailed | OSError):
            raise CallFailed(f"call {index} did not start: {exc}") from None
        raise
    offset = int(len(script.ulaw) * ((index * 0.6180339887) % 1.0))  # callers out of step
    caller = SipCaller(uac, dialog, rtp, drain, edge_rtp, script.ulaw, offset)
    dialog.on_remote_bye = lambda: gen.mark_lost(caller)
    return caller


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
    # transport="sip" only; a name is missing when the edge exports no such series
    sip_histograms: dict[str, dict[float, float]] = field(default_factory=dict)  # name -> le -> count
    sip_counters: dict[str, float] = field(default_factory=dict)  # name (with _total) -> value
    families: set[str] = field(default_factory=set)  # metric families the edge declares (no _total)


def scrape(metrics_url: str, pids: dict[str, int]) -> Scrape:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    buckets: dict[str, dict[float, float]] = {}
    stages: dict[str, dict[float, float]] = {}
    dropped: dict[str, float] = {}
    errors: dict[str, float] = {}
    sip_histograms: dict[str, dict[float, float]] = {}
    sip_counters: dict[str, float] = {}
    families: set[str] = set()
    active = 0.0
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            sip = s.labels.get("transport") == "sip"
            if sip and s.name.endswith("_bucket") and s.name.removesuffix("_bucket") in SIP_HISTOGRAMS:
                sip_histograms.setdefault(s.name.removesuffix("_bucket"), {})[float(s.labels["le"])] = s.value
            elif sip and s.name in SIP_COUNTERS:
                sip_counters[s.name] = sip_counters.get(s.name, 0.0) + s.value
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
    return Scrape(
        time.monotonic(),
        cpu,
        buckets,
        stages,
        dropped,
        errors,
        active,
        sip_histograms,
        sip_counters,
        families,
    )


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


# ---- the SIP jitter buffer under network jitter ----------------------------------------


@dataclass
class JitterLevel:
    """One level of `--jitter`: what the edge's SIP jitter buffer did with it."""

    jitter_ms: float  # the relay's upstream Impairment(jitter_ms=...)
    calls: int  # calls that ran (concurrently)
    failed: int
    failure: str  # the first failed call's reason
    seeds: list[int]
    window_s: float  # the histograms' window
    calls_s: float  # from the scrape before the calls to the one after the edge ended them
    # p50/p95/p99 (delay), p50/p95 (depth), p50 (the edge's jitter estimate) in ms over the
    # window; None: the edge exports no such series; NaN: nothing observed in the window
    delay_ms: dict[str, float] | None
    delay_count: float
    depth_ms: dict[str, float] | None
    edge_jitter_ms: dict[str, float] | None
    frames: float  # SIP frames the edge processed over the calls
    # over the calls; None: the edge exports no such counter
    concealed: float | None
    late: float | None
    lost: float | None
    relay_up: dict[str, int] = field(default_factory=dict)  # summed over the calls' relays
    relay_down: dict[str, int] = field(default_factory=dict)
    heard_back: int = 0  # RTP packets the edge sent that reached the callers
    lost_calls: int = 0  # the edge hung up on us during the level


def _quantiles_ms(
    name: str, a: Scrape, b: Scrape, qs: tuple[float, ...]
) -> tuple[dict[str, float] | None, float]:
    """{"p50": ms, ...} of a transport="sip" histogram between two scrapes, and its count;
    (None, 0) when the edge does not declare it (declared without a sip series: NaNs, 0)."""
    if name not in b.families:
        return None, 0.0
    cumulative = window_buckets(b.sip_histograms.get(name, {}), a.sip_histograms.get(name, {}))
    count = cumulative[-1][1] if cumulative else 0.0
    return {f"p{round(q * 100)}": histogram_quantile(q, cumulative) * 1000 for q in qs}, count


def _counter(name: str, a: Scrape, b: Scrape) -> float | None:
    """A transport="sip" counter's growth between two scrapes; None when the edge does not
    declare it (declared without a sip series yet: nothing counted, 0)."""
    if name.removesuffix("_total") not in b.families:
        return None
    return b.sip_counters.get(name, 0.0) - a.sip_counters.get(name, 0.0)


def _lane(stats: LaneStats, into: dict[str, int]) -> None:
    imp = stats.impairment
    for key, value in (
        ("packets_in", imp.packets_in),
        ("delayed", imp.delayed),
        ("dropped", imp.dropped),
        ("sent", stats.sent),
        ("overflow", stats.overflow),
        ("unroutable", stats.unroutable),
    ):
        into[key] = into.get(key, 0) + value


async def jitter_level(
    level_ms: float,
    edge: EdgeAddress,
    pids: dict[str, int],
    script: Script,
    args: argparse.Namespace,
    first_index: int,
) -> JitterLevel:
    """`--jitter-calls` concurrent SIP calls, each through its own relay adding up to
    `level_ms` of uniform jitter upstream, streaming for WARMUP_S + `--seconds`."""
    uac = SipUac(edge.sip_address, SIP_AGENT, user_agent="voicemesh-bench")
    await uac.start()
    gen = LoadGenerator()
    relays: list[UdpImpairmentRelay] = []
    seeds = [args.seed + i for i in range(args.jitter_calls)]
    before = await wait_idle(edge, pids)
    ticker = asyncio.create_task(gen.run(), name="ticker")

    async def one(i: int) -> SipCaller:
        caller = await open_sip_call(uac, script, first_index + i, gen)
        relay = UdpImpairmentRelay(caller.edge_rtp, upstream=Impairment(jitter_ms=level_ms), seed=seeds[i])
        try:
            await relay.start()
        except OSError as exc:
            await caller.hang_up()
            raise CallFailed(f"the relay did not start: {exc}") from None
        relays.append(relay)
        caller.send_to = relay.address  # the edge latches onto the relay with the first packet
        gen.callers.append(caller)
        return caller

    failures: list[str] = []
    try:
        opened = await asyncio.gather(*(one(i) for i in range(args.jitter_calls)), return_exceptions=True)
        failures = [str(x) or repr(x) for x in opened if isinstance(x, BaseException)]
        if gen.callers:  # else nothing to wait for: the row says why
            await asyncio.sleep(WARMUP_S)
        a = await asyncio.to_thread(scrape, edge.metrics_url, pids)
        if gen.callers:
            await asyncio.sleep(args.seconds)
        b = await asyncio.to_thread(scrape, edge.metrics_url, pids)
    finally:
        await asyncio.gather(*(hang_up(c) for c in gen.callers), return_exceptions=True)
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        for relay in relays:
            await relay.aclose()
        uac.close()
    after = await wait_idle(edge, pids)
    up: dict[str, int] = {}
    down: dict[str, int] = {}
    for relay in relays:
        _lane(relay.stats.upstream, up)
        _lane(relay.stats.downstream, down)
    delay, delay_count = _quantiles_ms(JITTER_DELAY, a, b, (0.50, 0.95, 0.99))
    depth, _ = _quantiles_ms(JITTER_DEPTH, a, b, (0.50, 0.95))
    measured, _ = _quantiles_ms(MEDIA_JITTER, a, b, (0.50,))
    frames = window_buckets(after.buckets.get("sip", {}), before.buckets.get("sip", {}))
    return JitterLevel(
        jitter_ms=level_ms,
        calls=len(gen.callers),
        failed=len(failures),
        failure=failures[0] if failures else "",
        seeds=seeds,
        window_s=b.at - a.at,
        calls_s=after.at - before.at,
        delay_ms=delay,
        delay_count=delay_count,
        depth_ms=depth,
        edge_jitter_ms=measured,
        frames=frames[-1][1] if frames else 0.0,
        concealed=_counter(CONCEALED, before, after),
        late=_counter(LATE, before, after),
        lost=_counter(LOST, before, after),
        relay_up=up,
        relay_down=down,
        heard_back=sum(c.drain.received for c in gen.callers if isinstance(c, SipCaller)),
        lost_calls=gen.lost,
    )


def _ms(values: dict[str, float] | None, keys: tuple[str, ...], unit: str = "") -> str:
    if values is None:
        return "not exported"
    if all(math.isnan(values[k]) for k in keys):
        return "no samples"
    return "/".join(f"{values[k]:.1f}" for k in keys) + unit


def _count(value: float | None) -> str:
    return "absent" if value is None else f"{value:.0f}"


JITTER_COLUMNS = (
    ("jitter", 6),
    ("calls", 5),
    ("edge jitter p50", 15),
    ("delay p50/p95/p99 ms", 20),
    ("depth p50/p95 ms", 16),
    ("frames", 7),
    ("concealed", 9),
    ("late", 6),
    ("lost", 6),
    ("relay up in/delayed/sent", 24),
)


def jitter_row(j: JitterLevel) -> str:
    cells = (
        f"{j.jitter_ms:.0f} ms",
        f"{j.calls}",
        _ms(j.edge_jitter_ms, ("p50",), " ms"),
        _ms(j.delay_ms, ("p50", "p95", "p99")),
        _ms(j.depth_ms, ("p50", "p95")),
        f"{j.frames:.0f}",
        _count(j.concealed),
        _count(j.late),
        _count(j.lost),
        f"{j.relay_up.get('packets_in', 0)}/{j.relay_up.get('delayed', 0)}/{j.relay_up.get('sent', 0)}",
    )
    line = " ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, JITTER_COLUMNS, strict=True))
    notes = []
    if j.failed:
        notes.append(f"{j.failed} calls failed, the first: {j.failure}")
    if j.lost_calls:
        notes.append(f"{j.lost_calls} calls hung up by the edge")
    if j.relay_up.get("overflow") or j.relay_down.get("overflow"):
        notes.append("relay overflowed")
    if j.delay_ms is not None and j.calls:
        notes.append(f"{j.delay_count:.0f} delays observed")
    return line + ("  " + "; ".join(notes) if notes else "")


async def run_jitter(
    edge: EdgeAddress, pids: dict[str, int], script: Script, args: argparse.Namespace, procs: Processes
) -> list[JitterLevel]:
    print(
        f"\nsip jitter buffer: per level {args.jitter_calls} concurrent calls, each through its own "
        f"relay (upstream jitter uniform in [0, level] ms, seeds {args.seed}..{args.seed + args.jitter_calls - 1}; "
        f"none downstream); histograms over {args.seconds:.0f} s after {WARMUP_S:.0f} s warm-up, "
        "counts over the whole calls",
        flush=True,
    )
    print(" ".join(f"{name:>{width}}" for name, width in JITTER_COLUMNS) + "  notes", flush=True)
    levels = []
    for n, level in enumerate(args.jitter):
        procs.check()
        result = await jitter_level(level, edge, pids, script, args, 100_000 + n * args.jitter_calls)
        levels.append(result)
        print(jitter_row(result), flush=True)
    if any(j.delay_ms is None for j in levels):
        print(f"  {JITTER_DELAY} is not exported by this edge (yet)")
    if any(j.late is None for j in levels):
        print(f"  {LATE} is not exported by this edge: late shows 'absent'")
    return levels


# ---- the processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeAddress:
    ws_port: int
    metrics_port: int
    grpc_port: int
    token: str
    twilio_token: str
    sip_port: int
    rtp_ports: tuple[int, int]

    @property
    def sip_address(self) -> Address:
        return (HOST, self.sip_port)

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


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_sip_port() -> int:
    """A port free for both TCP and UDP (the edge listens for SIP on both)."""
    for _ in range(50):
        port = free_port()
        if _udp_free(port):
            return port
    raise RuntimeError("found no port free for both TCP and UDP for the edge's SIP")


def free_rtp_range(calls: int) -> tuple[int, int]:
    """(min, max) for VOICEMESH_RTP_PORT_MIN/MAX: `calls` even ports with the odd ones above,
    all free now, below the ephemeral range (where this process's own sockets land)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    span = 2 * calls
    top = ephemeral - span if ephemeral - span > 10000 else 65536 - span
    rng = random.Random()
    for _ in range(50):
        low = rng.randrange(10000 if top > 10000 else 1024, top) & ~1
        if all(_udp_free(port) for port in range(low, low + span)):
            return low, low + span - 1
    raise RuntimeError(f"found no {span} free UDP ports in a row for the edge's RTP")


def start_all(procs: Processes, max_calls: int, sip_calls: int) -> EdgeAddress:
    valkey = procs.server(valkey_server(log_path=procs.logs / "valkey.log"))
    nats = procs.server(nats_server(procs.home / "nats", log_path=procs.logs / "nats.log"))
    port_file = procs.home / "peers.json"
    tls_root = procs.home / "tls"  # the mesh's mTLS, as in production
    write_mesh_tls(tls_root, GRPC_IDENTITIES, dt.datetime.now(dt.UTC))
    cmd = [sys.executable, str(FAKEPEERS), "--port-file", str(port_file), "--tls-root", str(tls_root)]
    procs.spawn("fakepeers", cmd)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError("fakepeers did not write its port file in 30 s")
        time.sleep(0.05)
    peers = json.loads(port_file.read_text())
    edge = EdgeAddress(
        free_port(),
        free_port(),
        free_port(),
        secrets.token_urlsafe(24),
        secrets.token_hex(16),
        free_sip_port(),
        free_rtp_range(sip_calls + RTP_SPARE_PORTS),
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
            "VOICEMESH_MESH_TLS_DIR": str(tls_root / "media-edge"),
            "VOICEMESH_EDGE_TOKEN": edge.token,
            "VOICEMESH_TWILIO_AUTH_TOKEN": edge.twilio_token,
            "VOICEMESH_TWILIO_STREAM_URL": edge.twilio_url,
            "VOICEMESH_CAPACITY": str(max_calls),
            "VOICEMESH_SIP_ENABLED": "true",
            "VOICEMESH_SIP_HOST": HOST,
            "VOICEMESH_SIP_PORT": str(edge.sip_port),
            "VOICEMESH_RTP_PORT_MIN": str(edge.rtp_ports[0]),
            "VOICEMESH_RTP_PORT_MAX": str(edge.rtp_ports[1]),
            "VOICEMESH_DRAIN_TIMEOUT_S": "5",
            "VOICEMESH_LOG_FORMAT": "json",
        }
    )
    procs.spawn("media-edge", [sys.executable, "-m", "voicemesh.edge"], env)
    return edge


async def wait_serving(procs: Processes, edge: EdgeAddress, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    cli = MeshTls.load(procs.home / "tls" / "cli", dt.datetime.now(dt.UTC))
    address = f"127.0.0.1:{edge.grpc_port}"
    while await check_health(address, timeout_s=0.5, tls=cli, peer="media-edge") != "SERVING":
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
    uac: SipUac | None = None
    if kind == "sip":
        uac = SipUac(edge.sip_address, SIP_AGENT, user_agent="voicemesh-bench")
        await uac.start()
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

            async def one(i: int, gate: asyncio.Semaphore = gate) -> Caller | SipCaller:
                async with gate:
                    if uac is None:
                        return await open_call(edge, twilio, script, i, gen)
                    caller = await open_sip_call(uac, script, i, gen)
                    gen.callers.append(caller)  # at once: the edge's jitter buffer is waiting
                    return caller

            opened = await asyncio.gather(*(one(index + i) for i in range(missing)), return_exceptions=True)
            index += missing
            failures = [str(x) or repr(x) for x in opened if isinstance(x, BaseException)]
            gen.callers.extend(c for c in opened if isinstance(c, Caller))  # SIP ones are in already
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
        if uac is not None:
            uac.close()
    if gen.edge_errors:
        print(f"  the edge sent errors: {dict(gen.edge_errors)}")
    if uac is not None and uac.stray:
        print(f"  {uac.stray} SIP messages for no call of ours")
    await wait_idle(edge, pids)
    return steps


async def wait_idle(edge: EdgeAddress, pids: dict[str, int], timeout_s: float = 15.0) -> Scrape:
    """Scrape until the edge serves no session (or `timeout_s` pass); the last scrape."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = await asyncio.to_thread(scrape, edge.metrics_url, pids)
        if now.active <= 0 or time.monotonic() > deadline:
            if now.active > 0:
                print(
                    f"  the edge still serves {now.active:.0f} sessions {timeout_s:.0f} s after the hang-ups"
                )
            return now
        await asyncio.sleep(0.2)


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
    kinds = TRANSPORTS.get(args.transport, (args.transport,)) if args.transport else ()
    largest = max(args.steps) if kinds else 0
    jitter_calls = args.jitter_calls if args.jitter else 0
    sip_calls = max(largest if "sip" in kinds else 0, jitter_calls)
    edge = start_all(procs, max(largest, jitter_calls) + 10, sip_calls)
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
    print(
        f"edge sip: udp {HOST}:{edge.sip_port}, rtp ports {edge.rtp_ports[0]}-{edge.rtp_ports[1]}; "
        f"callers ask for sip:{SIP_AGENT}@{HOST}:{edge.sip_port}"
    )
    results: dict[str, list[Step]] = {}
    for kind in kinds:
        results[kind] = await run_transport(kind, edge, pids, script, args, procs)
    jitter = await run_jitter(edge, pids, script, args, procs) if args.jitter else []
    print()
    per_call: dict[str, float] = {}
    for kind, steps in results.items():
        if not steps:
            print(f"{kind}: no step measured (the first step's calls did not start)")
            continue
        line, per_call[kind] = summary(kind, steps, max(args.steps))
        print(line)
    native = per_call.get("native", math.nan)
    for kind, value in per_call.items():
        if kind != "native" and not math.isnan(value) and not math.isnan(native):
            print(f"{kind} / native CPU per call: {value / native:.2f}x")
    problems = edge_log_summary(procs.logs / "media-edge.log")
    print("\nedge log warnings/errors:" + ("" if problems else " none"))
    for line in problems:
        print(line)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "edge_idle_core": idle,
        "steps": {k: [asdict(s) for s in v] for k, v in results.items()},
        "jitter": [asdict(j) for j in jitter],
    }


def jitter_levels(text: str) -> list[float]:
    """`"0,20,40"` -> [0.0, 20.0, 40.0] (ms, each >= 0, in the order given)."""
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected milliseconds, comma-separated, e.g. 0,20,40"
        ) from None
    if not levels or any(not 0 <= v < 10_000 for v in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: each level must be milliseconds in [0, 10000)")
    return levels


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--transport",
        choices=("native", "twilio", "sip", "both", "all"),
        help="both = native, twilio (the default without --jitter); all = native, twilio, sip",
    )
    parser.add_argument(
        "--jitter",
        nargs="?",
        const=",".join(f"{v:g}" for v in DEFAULT_JITTER_MS),
        type=jitter_levels,
        help="measure the SIP jitter buffer at these upstream jitter levels, ms, comma-separated "
        "(alone: %(const)s); with --transport as well, after the transports",
    )
    parser.add_argument(
        "--jitter-calls",
        type=int,
        default=3,
        help="concurrent SIP calls per jitter level (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the first relay's seed (default %(default)s)")
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
    if args.jitter_calls < 1:
        parser.error("--jitter-calls must be at least 1")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.transport is None and not args.jitter:
        args.transport = "both"
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
