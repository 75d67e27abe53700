"""Calls over SIP/RTP from Debian's SIPp, a SIP user agent this project did not write, with
tcpdump on the loopback showing the RTP that came back to SIPp's media port. Everything
behind the edge is real."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
from sipp import Rtp, audio_of, caller_ulaw, capture_udp, rtp_of, run_sipp

from voicemesh.audio.resample import resample
from voicemesh.cli.calls_cmd import CallRow, calls_from_events, fetch_call_events
from voicemesh.cli.dial_cmd import dial
from voicemesh.cli.events_cmd import fetch_events
from voicemesh.cli.localmesh import LocalMesh
from voicemesh.mesh.events import event_name
from voicemesh.mesh.localservers import free_port
from voicemesh.v1 import edge_pb2

from .conftest import FIXTURES
from .test_call import transcribe, wer

pytestmark = pytest.mark.e2e
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
GREETING = (
    "Hello, thanks for calling Bella Vista. I can book a table for you. How many people will be joining?"
)
ASKED_DAY = "What day would you like to come?"
GREETING_S = 6.5  # the caller waits this long before it speaks: the greeting has played


def to_16k(pcm8k: bytes) -> bytes:
    return resample(np.frombuffer(pcm8k, dtype=np.int16), 8000, 16000).tobytes()


async def sip_call(
    mesh: LocalMesh, tmp_path: Path, scenario: str, ulaw: bytes, pause_ms: int
) -> tuple[list[Rtp], CallRow]:
    """Place one SIPp call: the RTP that reached its media port, and the call as `voicemesh
    calls` lists it (the tests run one call at a time: the newest SIP call is this one)."""
    (tmp_path / "caller.ulaw").write_bytes(ulaw)
    media_port = free_port()
    async with capture_udp(media_port, tmp_path / "to_caller.pcap") as pcap:
        run = await run_sipp(scenario, mesh.ports.sip, tmp_path, media_port=media_port, pause_ms=pause_ms)
    assert run.ok, (run.output[-2000:], run.errors)
    events = await fetch_call_events(mesh.nats_url)
    rows = [
        r for r in calls_from_events(events, now=datetime.now(UTC), limit=1000) if r.transport == "sip-udp"
    ]
    assert rows, "the SIP call is not in the session events"
    return rtp_of(pcap), rows[0]


def sipp_logs(workdir: Path, scenario: str) -> list[str]:
    """What a scenario's <log> actions wrote (SIPp run with -trace_logs)."""
    return [line for log in workdir.glob(f"{scenario}_*_logs.log") for line in log.read_text().splitlines()]


def check_rtp_stream(packets: list[Rtp]) -> None:
    """What a SIP phone expects of RTP: one SSRC, sequence numbers without a gap, 20 ms
    timestamps inside a talk spurt, and the marker bit on the first packet of each spurt."""
    audio = [p for p in packets if p.payload_type == 0]
    assert len(audio) > 100, f"only {len(audio)} PCMU packets reached the caller"
    assert len({p.ssrc for p in audio}) == 1
    for prev, cur in itertools.pairwise(audio):
        assert (cur.sequence - prev.sequence) & 0xFFFF == 1, (prev.sequence, cur.sequence)
        step = (cur.timestamp - prev.timestamp) & 0xFFFFFFFF
        assert step % 160 == 0 and step >= 160, step
        assert cur.marker == (step > 160), (step, cur.marker)  # a new spurt after silence
    assert audio[0].marker
    assert all(len(p.payload) == 160 for p in audio)


async def test_a_sip_caller_is_greeted_answered_and_the_call_is_listed(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    ulaw = caller_ulaw(FIXTURES / "caller_party.wav", lead_s=GREETING_S)
    packets, row = await sip_call(mesh, tmp_path, "uac_stream.xml", ulaw, pause_ms=14_000)
    check_rtp_stream(packets)
    assert row.ended == "caller", row
    events = await fetch_events(mesh.nats_url, row.session_id)
    said = [e.transcript.text for e in events if event_name(e) == "transcript" and e.transcript.final]
    assert len(said) == 1 and wer("Hi, I would like a table for four people, please.", said[0]) <= 0.5, said
    # what reached SIPp's media port: the greeting, then the answer to "a table for four"
    heard = await transcribe(mesh, to_16k(audio_of(packets)))
    assert wer(GREETING + " " + ASKED_DAY, heard) <= 0.34, heard
    (started,) = [e.call_started for e in events if event_name(e) == "call_started"]
    assert (started.transport, started.agent, started.caller) == ("sip-udp", "Bella Vista", "[CALLER]")
    # the call's media quality, at its end: every packet of the 10.4 s stream arrived
    (quality,) = [e.media_quality for e in events if event_name(e) == "media_quality" and e.media_quality.final]
    assert quality.packets_received >= 500 and quality.packets_lost == 0, quality


async def test_jfk_over_sip_reaches_reasoning_and_the_reply_comes_back_as_rtp(
    mesh: LocalMesh, tmp_path: Path, assets_dir: Path
) -> None:
    ulaw = b"\xff" * int(GREETING_S * 8000) + (assets_dir / "audio" / "jfk8k.ulaw").read_bytes()
    packets, row = await sip_call(mesh, tmp_path, "uac_stream.xml", ulaw, pause_ms=22_000)
    check_rtp_stream(packets)
    events = await fetch_events(mesh.nats_url, row.session_id)
    said = " ".join(e.transcript.text for e in events if event_name(e) == "transcript" and e.transcript.final)
    assert wer(JFK_TEXT, said) <= 0.35, said
    replies = [e.response for e in events if event_name(e) == "response" and e.response.in_reply_to]
    assert replies, "reasoning answered none of the caller's turns"
    # the reply audio went out after the caller's first turn, as RTP to SIPp's media port
    first_reply = min(e.time.ToDatetime(tzinfo=UTC) for e in events if event_name(e) == "turn_latency")
    after = [p for p in packets if datetime.fromtimestamp(p.at, UTC) > first_reply]
    assert len(after) > 25, f"{len(after)} packets of reply audio reached the caller"


async def test_dtmf_over_sip_reaches_the_agent(mesh: LocalMesh, tmp_path: Path) -> None:
    """Pressing 4 (RFC 4733 events from SIPp's own capture) answers "How many people?"."""
    packets, row = await sip_call(mesh, tmp_path, "uac_dtmf_4.xml", b"", pause_ms=6_000)
    events = await fetch_events(mesh.nats_url, row.session_id)
    assert [e.dtmf_received.digits for e in events if event_name(e) == "dtmf_received"] == ["4"]
    heard = await transcribe(mesh, to_16k(audio_of(packets)))
    assert wer(GREETING + " " + ASKED_DAY, heard) <= 0.34, heard


async def test_twenty_concurrent_sip_calls_all_complete(mesh: LocalMesh, tmp_path: Path, assets_dir: Path) -> None:
    """20 SIPp calls at once, each streaming JFK for 11 s: none fails, each is listed."""
    (tmp_path / "caller.ulaw").write_bytes((assets_dir / "audio" / "jfk8k.ulaw").read_bytes())
    before = await fetch_call_events(mesh.nats_url)
    seen = {r.session_id for r in calls_from_events(before, now=datetime.now(UTC), limit=1000)}
    run = await run_sipp("uac_stream.xml", mesh.ports.sip, tmp_path, calls=20, pause_ms=12_000)
    assert run.ok, (run.output[-2500:], run.errors[-2000:])
    # SIPp is done once its BYEs are answered; each call's end reaches NATS just after
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        events = await fetch_call_events(mesh.nats_url)
        rows = [r for r in calls_from_events(events, now=datetime.now(UTC), limit=1000) if r.session_id not in seen]
        if (len(rows) == 20 and not any(r.live for r in rows)) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert len(rows) == 20, [(r.transport, r.ended) for r in rows]
    assert {(r.transport, r.ended) for r in rows} == {("sip-udp", "caller")}
    assert len({r.carrier_call_id for r in rows}) == 20


async def test_asking_for_a_person_over_sip_is_a_refer_to_the_agents_desk(mesh: LocalMesh, tmp_path: Path) -> None:
    (tmp_path / "caller.ulaw").write_bytes(caller_ulaw(FIXTURES / "caller_person.wav", lead_s=GREETING_S))
    run = await run_sipp("uac_transfer.xml", mesh.ports.sip, tmp_path, extra=("-trace_logs",))
    assert run.ok, (run.output[-2000:], run.errors)
    logged = await asyncio.to_thread(sipp_logs, tmp_path, "uac_transfer")
    assert any("Refer-To: sip:host@bellavista.example" in line for line in logged), logged
    events = await fetch_call_events(mesh.nats_url)
    row = next(r for r in calls_from_events(events, now=datetime.now(UTC), limit=1000) if r.transport == "sip-udp")
    assert row.ended == "transfer", row
    session_events = await fetch_events(mesh.nats_url, row.session_id)
    (transferred,) = [e.call_transferred for e in session_events if event_name(e) == "call_transferred"]
    assert (transferred.method, transferred.result) == ("sip-refer", "connected")


async def test_voicemesh_dial_calls_a_phone_and_the_agent_talks_to_it(mesh: LocalMesh, tmp_path: Path) -> None:
    """`voicemesh dial` (its gRPC call): SIPp as the phone answers, hears the greeting, says
    it wants a table for four, hears the question that follows, and hangs up."""
    (tmp_path / "caller.ulaw").write_bytes(caller_ulaw(FIXTURES / "caller_party.wav", lead_s=GREETING_S))
    phone_port, media_port = free_port(), free_port()
    async with capture_udp(media_port, tmp_path / "to_phone.pcap") as pcap:
        phone = asyncio.create_task(
            run_sipp(
                "uas_answer_hangs_up.xml", 0, tmp_path, server=True, sip_port=phone_port,
                media_port=media_port, pause_ms=14_000,
            )
        )
        await asyncio.sleep(0.5)
        edge = f"127.0.0.1:{mesh.ports.grpc['media-edge']}"
        request = edge_pb2.DialRequest(target=f"sip:phone@127.0.0.1:{phone_port}", agent="restaurant")
        answered = await dial(edge, mesh.token, request, mesh.tls)
        run = await asyncio.wait_for(phone, 60)
    assert run.ok, (run.output[-2000:], run.errors)
    events = await fetch_call_events(mesh.nats_url)
    rows = [r for r in calls_from_events(events, now=datetime.now(UTC), limit=1000) if r.carrier_call_id == answered.call_id]
    assert [(r.transport, r.ended) for r in rows] == [("sip-udp", "caller")], rows
    session_events = await fetch_events(mesh.nats_url, rows[0].session_id)
    said = [e.transcript.text for e in session_events if event_name(e) == "transcript" and e.transcript.final]
    assert len(said) == 1 and wer("Hi, I would like a table for four people, please.", said[0]) <= 0.5, said
    heard = await transcribe(mesh, to_16k(audio_of(rtp_of(pcap))))
    assert wer(GREETING + " " + ASKED_DAY, heard) <= 0.34, heard


async def test_dial_without_the_edge_token_is_refused(mesh: LocalMesh) -> None:
    edge = f"127.0.0.1:{mesh.ports.grpc['media-edge']}"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dial(edge, "not-the-token", edge_pb2.DialRequest(target="sip:x@127.0.0.1:9"), mesh.tls)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
