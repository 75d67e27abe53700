"""The SIP transport in this process, called by Debian's SIPp (a SIP user agent this project
did not write) and by hand-made datagrams for what SIPp cannot send: a retransmitted
INVITE, broken SDP, garbage. Behind the transport is a small call handler in place of the
mesh (the whole mesh answering SIP calls is tests/e2e/test_sip.py)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from baresip import dial, self_signed
from sipp import ULAW_SILENCE, Rtp, SippRun, capture_udp, capture_udp_range, rtp_of, run_sipp

from voicemesh.audio.g711 import ulaw_encode
from voicemesh.audio.wav import read_wav, write_wav
from voicemesh.edge.port import (
    Dtmf,
    EndReason,
    Frame,
    Hangup,
    Hold,
    MediaPort,
    PortEvent,
    QualityReport,
    Transferred,
)
from voicemesh.edge.sip.offer import SrtpPolicy
from voicemesh.edge.sip.transport import DialFailed, SipCallTransport, SipSettings
from voicemesh.mesh.localservers import free_port
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.integration


@dataclass
class Handler:
    """Stands in for the mesh behind the edge: records each call's events, answers after
    `answer_after_s`, refuses with `refuse`, or hangs up after `hang_up_after` frames."""

    answer_after_s: float = 0.0
    refuse: EndReason | None = None
    hang_up_after: int | None = None
    calls: list[MediaPort] = field(default_factory=list)
    events: list[list[PortEvent]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, port: MediaPort) -> None:
        self.calls.append(port)
        events: list[PortEvent] = []
        self.events.append(events)
        try:
            if self.refuse is not None:
                await port.close(self.refuse)
                return
            await asyncio.sleep(self.answer_after_s)
            frames = 0
            while True:
                event = await port.receive()
                events.append(event)
                if isinstance(event, Hangup):
                    await port.close(EndReason.CALLER)
                    return
                if isinstance(event, Frame):
                    frames += 1
                    await port.play(event.pcm)  # an echo: the caller hears itself
                    if self.hang_up_after is not None and frames >= self.hang_up_after:
                        await port.close(EndReason.AGENT)
                        return
        finally:
            self.done.set()


def errors(metrics: ServiceMetrics, kind: str) -> float:
    return (
        metrics.registry.get_sample_value("voicemesh_errors_total", {"service": "media-edge", "kind": kind})
        or 0.0
    )


Edge = tuple[SipCallTransport, Handler, ServiceMetrics]


@pytest.fixture
async def start_edge() -> AsyncIterator[Callable[..., Awaitable[Edge]]]:
    """start_edge(handler=Handler(...), **SipSettings fields) -> (transport, handler, metrics)."""
    started: list[SipCallTransport] = []

    async def start(handler: Handler | None = None, **options: object) -> Edge:
        metrics = ServiceMetrics.create("media-edge")
        low = 20000 + free_port() % 20000 // 2 * 2
        settings = SipSettings(port=0, rtp_ports=(low, low + 40), nonce_secret=b"n" * 32, **options)  # type: ignore[arg-type]
        transport = SipCallTransport(settings, metrics)
        handler = handler or Handler()
        await transport.start(handler)
        started.append(transport)
        return transport, handler, metrics

    yield start
    for transport in started:
        await transport.stop()


@pytest.fixture
async def edge(start_edge: Callable[..., Awaitable[Edge]]) -> Edge:
    return await start_edge()


def caller_audio(workdir: Path, seconds: float = 2.0) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    tone = bytes([0x80, 0x90, 0xA0, 0x90, 0x80, 0x10, 0x20, 0x10]) * int(seconds * 1000)  # loud μ-law
    (workdir / "caller.ulaw").write_bytes(tone + ULAW_SILENCE * 800)


async def test_a_call_is_answered_streams_both_ways_and_ends_with_the_callers_bye(
    edge, tmp_path: Path
) -> None:
    transport, handler, _ = edge
    caller_audio(tmp_path)
    run = await run_sipp("uac_stream.xml", transport.port, tmp_path, pause_ms=3000)
    assert run.ok, run.output[-1500:]
    await asyncio.wait_for(handler.done.wait(), 5)
    (events,) = handler.events
    frames = [e for e in events if isinstance(e, Frame)]
    assert len(frames) > 100  # 20 ms frames of 16 kHz audio, gapless
    assert isinstance(events[-1], Hangup) and events[-1].reason == "caller hung up"
    info = handler.calls[0].info
    assert (info.transport, info.agent, info.caller) == ("sip-udp", "restaurant", "sipp")


async def test_the_agent_hangs_up_with_a_bye_the_caller_answers(edge, tmp_path: Path) -> None:
    transport, handler, metrics = edge
    handler.hang_up_after = 50
    caller_audio(tmp_path)
    # the scenario waits for our BYE instead of sending its own
    run = await run_sipp("uac_hung_up.xml", transport.port, tmp_path)
    assert run.ok, run.output[-1500:]
    assert errors(metrics, "sip_bye_unanswered") == 0


async def test_options_is_answered(edge, tmp_path: Path) -> None:
    transport, _, _ = edge
    assert (await run_sipp("uac_options.xml", transport.port, tmp_path)).ok


async def test_an_offer_without_an_acceptable_codec_gets_488(edge, tmp_path: Path) -> None:
    transport, handler, metrics = edge
    run = await run_sipp("uac_488.xml", transport.port, tmp_path)
    assert run.ok, run.output[-1500:]
    assert handler.calls == [] and errors(metrics, "sip_no_acceptable_offer") == 1


async def test_a_cancel_while_ringing_gets_487_and_ends_the_call(start_edge, tmp_path: Path) -> None:
    transport, handler, _ = await start_edge(Handler(answer_after_s=3.0))
    run = await run_sipp("uac_cancel.xml", transport.port, tmp_path)
    assert run.ok, run.output[-1500:]
    await asyncio.wait_for(handler.done.wait(), 5)
    assert handler.events[0] == [Hangup("caller cancelled")]


async def test_a_call_the_edge_cannot_take_is_refused_with_503(start_edge) -> None:
    transport, _, _ = await start_edge(Handler(refuse=EndReason.UNAVAILABLE))
    statuses = await raw_invite(transport.port, "refused-1", listen_s=2.0)
    # over UDP the refusal is sent again until the caller acknowledges it (timer G)
    assert statuses[-1].startswith("SIP/2.0 503") and len([s for s in statuses if " 503 " in s]) >= 3, (
        statuses
    )
    statuses = await raw_invite(transport.port, "refused-2", listen_s=2.0, ack=True)
    assert [s for s in statuses if " 503 " in s] == ["SIP/2.0 503 Service Unavailable"], statuses


async def test_an_unknown_agent_gets_404(start_edge) -> None:
    transport, _, _ = await start_edge(Handler(refuse=EndReason.UNKNOWN_AGENT))
    statuses = await raw_invite(transport.port, "unknown-1")
    assert statuses[-1].startswith("SIP/2.0 404"), statuses


# ---- datagrams SIPp will not send ------------------------------------------------------

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"


def invite(
    call_id: str,
    sip_port: int,
    local_port: int,
    body: str,
    authorization: str = "",
    to_tag: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    head = (
        f"INVITE sip:restaurant@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{call_id}\r\n"
        f"From: <sip:test@127.0.0.1:{local_port}>;tag=t1\r\n"
        f"To: <sip:restaurant@127.0.0.1:{sip_port}>{';tag=' + to_tag if to_tag else ''}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:test@127.0.0.1:{local_port}>\r\n"
        + (f"Authorization: {authorization}\r\n" if authorization else "")
        + f"Max-Forwards: 70\r\nContent-Type: {content_type}\r\nContent-Length: {len(body.encode())}\r\n\r\n"
    )
    return head.encode() + body.encode()


def ack_for(request: str, response: str) -> bytes:
    """The ACK of a non-2xx final response: the INVITE's Via, From, Call-ID and request-URI,
    the response's To (with its tag), CSeq n ACK."""
    head = request.split("\r\n\r\n", 1)[0].split("\r\n")
    to = next(line for line in response.split("\r\n") if line.lower().startswith("to:"))
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "call-id", "max-forwards")]
    cseq = next(h for h in head if h.lower().startswith("cseq:")).split()[1]
    lines = [head[0].replace("INVITE", "ACK", 1), *keep, to, f"CSeq: {cseq} ACK", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_invite(
    sip_port: int,
    call_id: str,
    body: str | None = None,
    *,
    repeat_after_s: float | None = None,
    listen_s: float = 1.5,
    authorization: str = "",
    ack: bool = False,
    to_tag: str = "",
    content_type: str = "application/sdp",
) -> list[str]:
    """Send an INVITE from a plain UDP socket (again after `repeat_after_s`, the same
    transaction), and return the status lines that came back within `listen_s`; with `ack`,
    a final refusal is acknowledged as RFC 3261 §17.1.1.3 says."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    local = sock.getsockname()[1]
    data = invite(
        call_id,
        sip_port,
        local,
        SDP.format(port=free_port()) if body is None else body,
        authorization,
        to_tag,
        content_type,
    )
    loop = asyncio.get_running_loop()
    statuses: list[str] = []
    try:
        sock.sendto(data, ("127.0.0.1", sip_port))
        deadline = loop.time() + listen_s
        repeated = repeat_after_s is None
        while (left := deadline - loop.time()) > 0:
            if not repeated and loop.time() >= deadline - listen_s + repeat_after_s:
                sock.sendto(data, ("127.0.0.1", sip_port))
                repeated = True
            try:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), min(left, 0.1))
            except TimeoutError:
                continue
            text = reply.decode(errors="replace")
            statuses.append(text.split("\r\n", 1)[0])
            if ack and int(statuses[-1].split()[1]) >= 300:
                sock.sendto(ack_for(data.decode(errors="replace"), text), ("127.0.0.1", sip_port))
    finally:
        sock.close()
    return statuses


async def test_a_retransmitted_invite_is_one_call_answered_again(start_edge) -> None:
    transport, handler, metrics = await start_edge(Handler(answer_after_s=1.0))
    statuses = await raw_invite(transport.port, "retx-1", repeat_after_s=0.4, listen_s=2.0)
    assert len(handler.calls) == 1, "the retransmission became a second call"
    assert statuses.count("SIP/2.0 180 Ringing") == 2, statuses  # the last response, sent again
    assert any(s.startswith("SIP/2.0 200") for s in statuses), statuses
    assert errors(metrics, "sip_retransmission") == 1


async def test_an_invite_with_broken_sdp_gets_400_with_the_reason_and_calls_go_on(
    edge, tmp_path: Path
) -> None:
    transport, handler, metrics = edge
    statuses = await raw_invite(
        transport.port, "bad-sdp-1", body="v=0\r\nm=audio nope RTP/AVP 0\r\n", ack=True
    )
    assert len(statuses) == 1 and statuses[0].startswith("SIP/2.0 400 bad SDP"), statuses
    statuses = await raw_invite(transport.port, "no-c-1", body="v=0\r\nm=audio 4000 RTP/AVP 0\r\n", ack=True)
    assert statuses == ["SIP/2.0 400 bad SDP: no c= connection address for the audio stream"], statuses
    assert handler.calls == [] and errors(metrics, "sip_bad_offer") == 2
    caller_audio(tmp_path, 0.5)
    assert (await run_sipp("uac_stream.xml", transport.port, tmp_path, pause_ms=1000)).ok


async def test_garbage_is_counted_and_dropped_and_calls_go_on(edge, tmp_path: Path) -> None:
    transport, _, metrics = edge
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for junk in (b"\x00\xff" * 40, b"INVITE\r\n\r\n", b"SIP/2.0 banana\r\n\r\n", "é".encode() * 100):
        sock.sendto(junk, ("127.0.0.1", transport.port))
    sock.close()
    caller_audio(tmp_path, 0.5)
    assert (await run_sipp("uac_stream.xml", transport.port, tmp_path, pause_ms=1000)).ok
    assert errors(metrics, "bad_sip_message") >= 3


# ---- who may call ------------------------------------------------------------------------


async def test_a_caller_outside_the_allowed_networks_answers_a_digest_challenge(
    start_edge, tmp_path: Path
) -> None:
    transport, handler, metrics = await start_edge(allow=(), credentials={"alice": "s3cret-pass"})
    caller_audio(tmp_path, 0.5)
    run = await run_sipp(
        "uac_auth.xml", transport.port, tmp_path, pause_ms=1000, extra=("-au", "alice", "-ap", "s3cret-pass")
    )
    assert run.ok, run.output[-1500:]
    assert len(handler.calls) == 1 and errors(metrics, "sip_challenged") == 1
    # a wrong password is challenged again, and does not become a call
    bogus = 'Digest username="alice", realm="voicemesh", nonce="1.00", uri="sip:x", response="0000"'
    statuses = await raw_invite(transport.port, "wrong-1", authorization=bogus, ack=True)
    assert len(statuses) == 1 and statuses[0].startswith("SIP/2.0 401"), statuses
    assert len(handler.calls) == 1


async def test_without_credentials_a_caller_outside_the_allowed_networks_is_refused(start_edge) -> None:
    transport, handler, metrics = await start_edge(allow=())
    statuses = await raw_invite(transport.port, "outsider-1", ack=True)
    assert len(statuses) == 1 and statuses[0].startswith("SIP/2.0 403"), statuses
    assert handler.calls == [] and errors(metrics, "unauthorized") == 1


async def test_dtmf_reaches_the_call(edge, tmp_path: Path) -> None:
    transport, handler, _ = edge
    run = await run_sipp("uac_dtmf_4.xml", transport.port, tmp_path, pause_ms=500)
    assert run.ok, run.output[-1500:]
    await asyncio.wait_for(handler.done.wait(), 5)
    assert [e.digits for e in handler.events[0] if isinstance(e, Dtmf)] == ["4"]


# ---- TLS and SRTP, with baresip ----------------------------------------------------------


def microphone(path: Path, seconds: float = 3.0) -> bytes:
    """A WAV of a loud warbling tone the caller plays (8 kHz; baresip hangs up at its end);
    the μ-law it goes out as."""
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (np.sin(2 * np.pi * (440 + 60 * np.sin(2 * np.pi * 3 * t)) * t) * 12000).astype(np.int16).tobytes()
    write_wav(path, pcm, sample_rate=8000)
    return ulaw_encode(pcm)


def has_plaintext(packets: list[Rtp], plain_ulaw: bytes) -> int:
    """How many packets carry 160 bytes found verbatim in the caller's μ-law."""
    return sum(1 for p in packets if len(p.payload) >= 160 and p.payload[:160] in plain_ulaw)


async def test_baresip_over_tls_with_srtp_required_completes_and_the_wire_is_encrypted(
    start_edge, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    _, handler, metrics = await start_edge(
        srtp=SrtpPolicy.REQUIRE, tls_port=tls_port, tls_cert=str(cert), tls_key=str(key)
    )
    mic = tmp_path / "mic.wav"
    plain = microphone(mic)
    low = 30000 + free_port() % 20000 // 2 * 2
    async with capture_udp_range((low, low + 20), tmp_path / "from_caller.pcap") as pcap:
        run = await dial(
            f"sip:restaurant@127.0.0.1:{tls_port};transport=tls",
            tmp_path,
            mic,
            seconds=5,
            cafile=cert,
            rtp_ports=(low, low + 20),
        )
    assert run.established, run.output[-3000:]
    await asyncio.wait_for(handler.done.wait(), 10)
    port = handler.calls[0]
    assert port.info.transport == "sip-tls" and port.encrypted  # type: ignore[attr-defined]
    # what the edge decrypted is the caller's tone, about every frame of it
    frames = [e for e in handler.events[0] if isinstance(e, Frame)]
    heard = np.frombuffer(b"".join(f.pcm for f in frames), dtype=np.int16)
    assert len(frames) > 100 and np.sqrt(np.mean(heard.astype(float) ** 2)) > 3000
    assert isinstance(handler.events[0][-1], Hangup)
    # on the wire: SRTP (each packet 10 bytes of tag longer), never the caller's μ-law
    sent = [p for p in rtp_of(pcap) if p.payload_type == 0]
    assert len(sent) > 100 and all(len(p.payload) == 170 for p in sent), {len(p.payload) for p in sent}
    assert has_plaintext(sent, plain) == 0
    # and baresip heard the edge's echo of its tone, decrypted
    assert run.heard, run.output[-2000:]
    echo, _ = read_wav(run.heard[0])
    assert np.sqrt(np.mean(np.frombuffer(echo, dtype=np.int16).astype(float) ** 2)) > 1000
    assert errors(metrics, "unauthorized") == 0


async def test_rtcp_runs_both_ways_with_baresip_and_the_call_learns_its_round_trip(
    start_edge, tmp_path: Path
) -> None:
    """The edge's sender reports reach baresip, whose receiver reports come back with the
    round trip in them (RFC 3550 LSR/DLSR): the call gets a QualityReport with the RTT and
    the caller's view of our stream. Reports come every
    2.5-7.5 s each way, so the call lasts 16 s."""
    transport, handler, _ = await start_edge()
    mic = tmp_path / "mic.wav"
    microphone(mic, seconds=16)
    run = await dial(f"sip:restaurant@127.0.0.1:{transport.port}", tmp_path, mic, seconds=16, srtp="")
    assert run.established, run.output[-3000:]
    await asyncio.wait_for(handler.done.wait(), 10)
    reports = [e.quality for e in handler.events[0] if isinstance(e, QualityReport)]
    timed = [q for q in reports if q.rtt_ms is not None]
    assert timed, (reports, run.output[-2000:])
    assert all(0 < q.rtt_ms < 200 for q in timed), timed  # loopback: well under 200 ms
    assert timed[-1].remote_fraction_lost == 0.0 and timed[-1].packets_received > 300, timed[-1]
    # (the call core turns each report into the RTT metric and a media_quality event: publish.py)


async def test_with_srtp_required_a_plain_rtp_offer_gets_488(start_edge, tmp_path: Path) -> None:
    transport, handler, _ = await start_edge(srtp=SrtpPolicy.REQUIRE)
    statuses = await raw_invite(transport.port, "plain-1", ack=True)
    assert statuses[-1].startswith("SIP/2.0 488 this edge requires SRTP"), statuses
    assert handler.calls == []


def refer_to_seen(workdir: Path) -> list[str]:
    """The Refer-To URIs SIPp logged (uac_transfer.xml with -trace_logs)."""
    return [
        line.split("Refer-To: ", 1)[1].strip()
        for log in workdir.glob("uac_transfer_*_logs.log")
        for line in log.read_text().splitlines()
        if "Refer-To: " in line
    ]


@dataclass
class Transferring(Handler):
    """Transfers the call to `target` once it has heard `after` frames, as an agent does."""

    target: str = "sip:desk@example.com"
    after: int = 25
    outcome: list[Transferred] = field(default_factory=list)

    async def __call__(self, port: MediaPort) -> None:
        self.calls.append(port)
        frames = 0
        try:
            while frames < self.after:
                if isinstance(await port.receive(), Frame):
                    frames += 1
            self.outcome.append(await port.transfer(self.target))
            await port.close(EndReason.TRANSFER)
        finally:
            self.done.set()


async def test_a_transfer_is_a_refer_and_the_bye_follows_once_the_caller_reports_it(
    start_edge, tmp_path: Path
) -> None:
    handler = Transferring()
    transport, _, _ = await start_edge(handler)
    caller_audio(tmp_path)
    run = await run_sipp("uac_transfer.xml", transport.port, tmp_path, extra=("-trace_logs",))
    assert run.ok, (run.output[-1500:], run.errors)
    assert handler.outcome == [Transferred("sip-refer", "connected")]
    assert refer_to_seen(tmp_path) == ["sip:desk@example.com"]


async def test_a_number_is_transferred_on_the_callers_own_domain(start_edge, tmp_path: Path) -> None:
    handler = Transferring(target="+15550100")
    transport, _, _ = await start_edge(handler)
    caller_audio(tmp_path)
    # SIPp's From is sipp@127.0.0.1: the number goes to that host
    run = await run_sipp("uac_transfer.xml", transport.port, tmp_path, extra=("-trace_logs",))
    assert run.ok, (run.output[-1500:], run.errors)
    assert handler.outcome == [Transferred("sip-refer", "connected")]
    assert refer_to_seen(tmp_path) == ["sip:+15550100@127.0.0.1"]


# ---- calls the edge places -----------------------------------------------------------------


async def sipp_phone(
    scenario: str, workdir: Path, sip_port: int, pause_ms: int = 1000
) -> asyncio.Task[SippRun]:
    """SIPp as a phone waiting for one call on `sip_port` (its -p), started in the background."""
    caller_audio(workdir, 1.0)
    task = asyncio.create_task(
        run_sipp(scenario, 0, workdir, pause_ms=pause_ms, server=True, sip_port=sip_port)
    )
    await asyncio.sleep(0.5)  # SIPp binds its port
    return task


async def test_the_edge_dials_a_phone_and_the_call_runs_like_any_other(edge, tmp_path: Path) -> None:
    transport, handler, _ = edge
    handler.hang_up_after = 40
    phone_port = free_port()
    phone = await sipp_phone("uas_answer.xml", tmp_path, phone_port)
    port = await transport.dial(f"sip:desk@127.0.0.1:{phone_port}", agent="restaurant")
    run = await asyncio.wait_for(phone, 30)
    assert run.ok, (run.output[-1500:], run.errors)
    await asyncio.wait_for(handler.done.wait(), 5)
    assert port.info.agent == "restaurant" and port.info.metadata == {"direction": "outbound"}
    assert len([e for e in handler.events[0] if isinstance(e, Frame)]) >= 40  # the phone's audio came


async def test_a_phone_that_hangs_up_ends_the_call_we_placed(edge, tmp_path: Path) -> None:
    transport, handler, _ = edge
    phone_port = free_port()
    phone = await sipp_phone("uas_answer_hangs_up.xml", tmp_path, phone_port, pause_ms=1500)
    await transport.dial(f"sip:desk@127.0.0.1:{phone_port}")
    run = await asyncio.wait_for(phone, 30)
    assert run.ok, (run.output[-1500:], run.errors)
    await asyncio.wait_for(handler.done.wait(), 5)
    assert handler.events[0][-1] == Hangup("caller hung up")


async def test_a_busy_phone_or_none_is_a_dial_failure_that_names_it(edge, tmp_path: Path) -> None:
    transport, handler, _ = edge
    with pytest.raises(DialFailed) as busy:
        await transport.dial(f"sip:desk@127.0.0.1:{free_port()}", answer_timeout_s=1.5)
    assert busy.value.status == 0 and "no answer" in busy.value.reason
    with pytest.raises(ValueError, match="not a SIP URI"):
        await transport.dial("tel:+15550100")
    assert handler.calls == []


async def test_a_busy_phone_gets_its_ack_and_the_dial_fails_with_486(edge, tmp_path: Path) -> None:
    """The refusal is ACKed (SIPp fails the run if it has to retransmit its 486 for 5 s)."""
    transport, _, _ = edge
    phone_port = free_port()
    phone = await sipp_phone("uas_busy.xml", tmp_path, phone_port)
    with pytest.raises(DialFailed) as busy:
        await transport.dial(f"sip:desk@127.0.0.1:{phone_port}")
    assert (busy.value.status, busy.value.reason) == (486, "Busy Here")
    run = await asyncio.wait_for(phone, 30)
    assert run.ok, (run.output[-1500:], run.errors)


async def test_a_phone_that_asks_for_credentials_gets_the_dial_credentials(
    start_edge, tmp_path: Path
) -> None:
    """401 with a digest challenge: ACKed, and the INVITE again with the digest of
    VOICEMESH_SIP_DIAL_AUTH (SIPp's verifyauth checks it, and answers only if it is right)."""
    transport, handler, _ = await start_edge(dial_auth=("agent", "s3cret"))
    handler.hang_up_after = 20
    phone_port = free_port()
    phone = await sipp_phone("uas_challenge.xml", tmp_path, phone_port)
    await transport.dial(f"sip:desk@127.0.0.1:{phone_port}", agent="restaurant")
    run = await asyncio.wait_for(phone, 30)
    assert run.ok, (run.output[-1500:], run.errors)
    await asyncio.wait_for(handler.done.wait(), 5)
    assert len([e for e in handler.events[0] if isinstance(e, Frame)]) >= 20  # the call ran


@pytest.mark.parametrize(
    ("dial_auth", "status", "says"),
    [
        (None, 401, "set VOICEMESH_SIP_DIAL_AUTH"),
        (("agent", "wrong"), 403, "Forbidden"),
    ],
)
async def test_without_the_right_credentials_a_challenged_dial_fails_and_says_why(
    start_edge, tmp_path: Path, dial_auth: tuple[str, str] | None, status: int, says: str
) -> None:
    transport, handler, _ = await start_edge(dial_auth=dial_auth)
    phone_port = free_port()
    phone = await sipp_phone("uas_challenge.xml", tmp_path, phone_port)
    with pytest.raises(DialFailed) as refused:
        await transport.dial(f"sip:desk@127.0.0.1:{phone_port}")
    assert refused.value.status == status and says in refused.value.reason, refused.value
    run = await asyncio.wait_for(phone, 30)
    if dial_auth is None:  # SIPp had its ACK (message 2) and waited in vain for the INVITE again (3)
        assert "receive timeout on message uas_challenge:3," in run.errors, (run.output[-1500:], run.errors)
    else:
        assert run.ok, (run.output[-1500:], run.errors)  # the 401 and the 403 were ACKed
    assert handler.calls == []


async def test_an_invite_for_no_dialog_is_481_and_no_way_past_the_access_rule(start_edge) -> None:
    """A To tag does not make an INVITE a re-INVITE: for a dialog the edge does not have it
    gets 481, from anywhere, and no call starts (a caller once got in this way)."""
    transport, handler, _ = await start_edge(allow=())
    statuses = await raw_invite(transport.port, "tagged-1", to_tag="made-up", ack=True)
    assert statuses == ["SIP/2.0 481 Call/Transaction Does Not Exist"], statuses
    assert handler.calls == []


async def test_an_offer_that_is_not_sdp_gets_415(edge) -> None:
    transport, handler, _ = edge
    statuses = await raw_invite(transport.port, "not-sdp-1", content_type="text/plain", ack=True)
    assert statuses == ["SIP/2.0 415 Unsupported Media Type"], statuses
    assert handler.calls == []


async def test_hold_and_resume_with_a_new_codec_reach_the_call(edge, tmp_path: Path) -> None:
    transport, handler, _ = edge
    caller_audio(tmp_path, 1.0)
    media_port = free_port()
    async with capture_udp(media_port, tmp_path / "to_caller.pcap") as pcap:
        run = await run_sipp("uac_hold_resume.xml", transport.port, tmp_path, media_port=media_port)
    assert run.ok, (run.output[-1500:], run.errors)  # it checked each answer: recvonly, then PCMA
    await asyncio.wait_for(handler.done.wait(), 5)
    assert [e for e in handler.events[0] if isinstance(e, Hold)] == [Hold(True), Hold(False)]
    # the echo the handler plays goes out as PCMU, then (after the resume) as PCMA
    kinds = [p.payload_type for p in rtp_of(pcap) if p.payload_type in (0, 8)]
    assert kinds and kinds[0] == 0 and kinds[-1] == 8, sorted(set(kinds))


@dataclass
class Keying(Handler):
    """Sends keys to the caller once it has heard `after` frames, as an agent's send_dtmf."""

    keys: str = "12#"
    after: int = 10

    async def __call__(self, port: MediaPort) -> None:
        self.calls.append(port)
        frames = 0
        try:
            while frames < self.after:
                if isinstance(await port.receive(), Frame):
                    frames += 1
            await port.send_dtmf(self.keys)
            while not isinstance(await port.receive(), Hangup):
                pass
            await port.close(EndReason.CALLER)
        finally:
            self.done.set()


async def test_keys_the_agent_sends_reach_the_caller_as_telephone_events(start_edge, tmp_path: Path) -> None:
    transport, _, _ = await start_edge(Keying())
    caller_audio(tmp_path, 1.0)
    media_port = free_port()
    async with capture_udp(media_port, tmp_path / "to_caller.pcap") as pcap:
        run = await run_sipp("uac_stream.xml", transport.port, tmp_path, media_port=media_port, pause_ms=2500)
    assert run.ok, (run.output[-1500:], run.errors)
    events = [p for p in rtp_of(pcap) if p.payload_type == 101]  # the offer's telephone-event type
    ended = [p for p in events if p.payload[1] & 0x80]
    keys = [p.payload[0] for i, p in enumerate(ended) if i == 0 or ended[i - 1].timestamp != p.timestamp]
    assert keys == [1, 2, 11], keys  # 1, 2, #
    starts = [p for p in events if p.marker]
    assert len(starts) == 3 and len({p.timestamp for p in events}) == 3
    spacing = [b.at - a.at for a, b in itertools.pairwise(p for p in events if not p.payload[1] & 0x80)]
    assert max(spacing) < 0.2 and sorted(spacing)[len(spacing) // 2] > 0.015  # paced, not a burst
