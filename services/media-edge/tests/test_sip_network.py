"""The SIP edge's jitter buffer on real sockets: a caller's RTP crosses a bad network (the
UDP impairment relay: seeded jitter, reordering, duplication) on its way to the SIP
transport in this process, and what the call hears is compared with what was said.

The buffer's rules are tested on a virtual clock in test_sip_jitter.py; this is the same
buffer inside the port, fed by aiortp's socket, read on the port's own 20 ms clock, with
the edge's metrics. The caller is `voicemesh.cli.sipcaller` (INVITE, ACK, BYE over UDP)
with RTP paced here; behind the transport, a recorder stands in for the mesh.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from voicemesh.audio.g711 import ulaw_decode, ulaw_encode
from voicemesh.audio.resample import resample
from voicemesh.audio.wav import read_wav
from voicemesh.cli.impair import Impairment, UdpImpairmentRelay
from voicemesh.cli.sipcaller import SipUac
from voicemesh.edge.port import EndReason, Frame, Hangup, MediaPort
from voicemesh.edge.sip.transport import SipCallTransport, SipSettings
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.integration

SPEECH = Path(__file__).resolve().parents[3] / "tests" / "e2e" / "fixtures" / "caller_party.wav"
ULAW_FRAME = 160  # 20 ms at 8 kHz
TICK_S = 0.020
TAIL_FRAMES = 25  # half a second of line noise after the words, so the last ones play out


@dataclass
class Recorder:
    """Stands in for the mesh: keeps every 20 ms frame the call hears, until the caller's BYE."""

    pcm: list[bytes] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, port: MediaPort) -> None:
        try:
            while not isinstance(event := await port.receive(), Hangup):
                if isinstance(event, Frame):
                    self.pcm.append(event.pcm)
            await port.close(EndReason.CALLER)
        finally:
            self.done.set()


@pytest.fixture
async def edge() -> AsyncIterator[tuple[SipCallTransport, Recorder, ServiceMetrics]]:
    metrics = ServiceMetrics.create("media-edge")
    low = 20000 + free_port() % 20000 // 2 * 2
    settings = SipSettings(port=0, rtp_ports=(low, low + 8), nonce_secret=b"n" * 32)
    transport = SipCallTransport(settings, metrics)
    recorder = Recorder()
    await transport.start(recorder)
    yield transport, recorder, metrics
    await transport.stop()


def caller_frames() -> list[bytes]:
    """The caller's words as 8 kHz μ-law frames, with faint line noise after them."""
    pcm, _ = read_wav(SPEECH)
    speech = resample(np.frombuffer(pcm, dtype=np.int16), 16000, 8000)
    noise = np.random.default_rng(7).normal(0, 30, TAIL_FRAMES * ULAW_FRAME)
    samples = np.clip(np.concatenate([speech, noise]), -32768, 32767).astype("<i2")
    ulaw = ulaw_encode(samples[: samples.size - samples.size % ULAW_FRAME].tobytes())
    return [ulaw[i : i + ULAW_FRAME] for i in range(0, len(ulaw), ULAW_FRAME)]


class _Socket(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        pass


async def send_rtp(frames: list[bytes], to: tuple[str, int], sock: asyncio.DatagramTransport) -> None:
    """One PCMU packet per frame on a 20 ms clock of this loop (seq + 1, timestamp + 160)."""
    loop = asyncio.get_running_loop()
    ssrc, seq, ts = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
    due = loop.time()
    for i, payload in enumerate(frames):
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if i == 0 else 0), (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, ssrc
        )
        sock.sendto(header + payload, to)
        due += TICK_S
        await asyncio.sleep(max(0.0, due - loop.time()))


def heard_frames(sent: list[bytes], heard_pcm16k: bytes) -> tuple[int, int]:
    """(voiced frames sent, of them heard as themselves). The call's 16 kHz audio goes back to
    8 kHz; each sent frame is searched for at the offset the previous one was found at, up to
    ten frames later (the buffer deepens by stretching one frame at a time) or one earlier (it
    shrinks the same way), and counts as heard if its waveform matches there (normalised
    correlation above 0.9). Frames quieter than -40 dBFS are pauses and not counted."""
    said = [np.frombuffer(ulaw_decode(f), dtype=np.int16).astype(np.float64) for f in sent]
    heard = resample(np.frombuffer(heard_pcm16k, dtype=np.int16), 16000, 8000).astype(np.float64)
    voiced = [i for i, s in enumerate(said) if np.sqrt(np.mean(s**2)) > 32768 * 10 ** (-40 / 20)]
    first = said[voiced[0]]
    # the first voiced frame's place: the best match anywhere in the first second heard
    starts = range(0, min(len(heard) - ULAW_FRAME, 8000))
    offset = max(starts, key=lambda at: _match(first, heard[at : at + ULAW_FRAME])) - voiced[0] * ULAW_FRAME
    matched = 0
    for i in voiced:
        best, at = max(
            (_match(said[i], heard[a : a + ULAW_FRAME]), a)
            for step in range(-1, 11)
            for fine in (-2, -1, 0, 1, 2)
            if 0 <= (a := offset + i * ULAW_FRAME + step * ULAW_FRAME + fine) <= len(heard) - ULAW_FRAME
        )
        if best > 0.9:
            matched += 1
            offset = at - i * ULAW_FRAME
    return len(voiced), matched


def _match(a: np.ndarray, b: np.ndarray) -> float:
    if b.size != a.size:
        return -1.0
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else -1.0


def sample(metrics: ServiceMetrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, {"service": "media-edge", **labels}) or 0.0


async def call_through(
    edge: tuple[SipCallTransport, Recorder, ServiceMetrics], upstream: Impairment, seed: int
):
    transport, recorder, metrics = edge
    loop = asyncio.get_running_loop()
    uac = SipUac(("127.0.0.1", transport.port), agent="restaurant")
    await uac.start()
    rtp, _ = await loop.create_datagram_endpoint(_Socket, local_addr=("127.0.0.1", 0))
    try:
        dialog, edge_rtp = await uac.call(0, rtp.get_extra_info("sockname")[:2])
        async with UdpImpairmentRelay(edge_rtp, upstream=upstream, seed=seed) as relay:
            frames = caller_frames()
            await send_rtp(frames, relay.address, rtp)
            await asyncio.sleep(0.4)  # what is still buffered plays out
            assert await uac.bye(dialog), "the edge did not answer our BYE"
            await asyncio.wait_for(recorder.done.wait(), 5)
            stats = relay.stats.upstream.impairment
    finally:
        rtp.close()
        uac.close()
    return frames, b"".join(recorder.pcm), stats, metrics


async def test_a_clean_line_is_heard_frame_for_frame_with_one_frame_of_delay(edge) -> None:
    frames, heard, _, metrics = await call_through(edge, Impairment(), seed=1)
    voiced, matched = heard_frames(frames, heard)
    assert matched == voiced, f"{voiced - matched} of {voiced} voiced frames were not heard as sent"
    sip = {"transport": "sip"}
    assert sample(metrics, "voicemesh_media_frames_late_total", sip) == 0
    delays = sample(metrics, "voicemesh_jitter_buffer_delay_seconds_count", sip)
    assert delays >= len(frames) - 2, f"{delays} frames' delay observed of {len(frames)}"
    mean = sample(metrics, "voicemesh_jitter_buffer_delay_seconds_sum", sip) / delays
    assert mean <= 0.045, f"a clean line waited {mean * 1000:.0f} ms on average in the buffer"


async def test_through_jitter_reordering_and_duplicates_every_voiced_frame_is_heard(edge) -> None:
    """40 ms of uniform jitter, 5 % of packets held behind the next, 5 % sent twice: the buffer
    deepens to absorb it, so the call hears the caller's words whole, in order."""
    bad = Impairment(jitter_ms=40, reorder=0.05, duplicate=0.05)
    frames, heard, relayed, metrics = await call_through(edge, bad, seed=3)
    assert relayed.reordered > 5 and relayed.duplicated > 5, relayed  # the network was bad
    voiced, matched = heard_frames(frames, heard)
    assert matched >= 0.98 * voiced, f"{voiced - matched} of {voiced} voiced frames were not heard as sent"
    sip = {"transport": "sip"}
    late = sample(metrics, "voicemesh_media_frames_late_total", sip)
    assert late <= 0.02 * len(frames), f"{late} late frames of {len(frames)}"
    # every copy was dropped: as a duplicate, or (a copy of a late packet) as late
    duplicates = sample(metrics, "voicemesh_dropped_total", {"what": "rtp_duplicate"})
    assert relayed.duplicated - late <= duplicates <= relayed.duplicated, (duplicates, late, relayed)
    delays = sample(metrics, "voicemesh_jitter_buffer_delay_seconds_count", sip)
    mean = sample(metrics, "voicemesh_jitter_buffer_delay_seconds_sum", sip) / delays
    # the buffer held frames longer than on a clean line, and within its 200 ms bound
    assert 0.030 <= mean <= 0.200, f"the buffer held frames {mean * 1000:.0f} ms on average"
    assert sample(metrics, "voicemesh_jitter_buffer_depth_seconds_count", sip) >= 2  # once a second
