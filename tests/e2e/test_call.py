"""Whole calls through the running mesh, placed the way `voicemesh call` places them:
real-time 20 ms frames over the edge's WebSocket, real stt / reasoning / tts models."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import grpc
import jiwer
import pytest
import websockets

from voicemesh.audio.frames import rms_dbfs, split_frames
from voicemesh.cli.events_cmd import fetch_events
from voicemesh.cli.localmesh import LocalMesh
from voicemesh.cli.wsclient import CallFailed, place_call
from voicemesh.mesh.events import event_name
from voicemesh.mesh.grpcutil import channel
from voicemesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e

JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


async def transcribe(mesh: LocalMesh, pcm: bytes) -> str:
    """What the mesh's stt service hears in `pcm` (16 kHz PCM16), via its public gRPC API."""
    async with stt_channel(mesh) as ch:
        call = stt_pb2_grpc.SpeechToTextStub(ch).Recognize()
        await call.write(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(
                    session_id="e2e-check",
                    format=audio_pb2.AudioFormat(
                        encoding=audio_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=16000, channels=1, frame_ms=20
                    ),
                    language="en",
                    endpointing=stt_pb2.ENDPOINTING_EXTERNAL,
                )
            )
        )
        for i, frame in enumerate(split_frames(pcm)):
            await call.write(stt_pb2.RecognizeRequest(audio=audio_pb2.AudioFrame(sequence=i, pcm=frame)))
        await call.write(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id="check")))
        await call.done_writing()
        finals = []
        async for resp in call:
            if resp.WhichOneof("kind") == "transcript" and resp.transcript.final:
                finals.append(resp.transcript.text)
        return " ".join(finals)


def stt_channel(mesh: LocalMesh) -> grpc.aio.Channel:
    """A channel to the mesh's stt as the edge (the one identity stt serves)."""
    return channel(f"127.0.0.1:{mesh.ports.grpc['stt']}", mesh.tls_as("media-edge"), "stt")


async def test_a_jfk_call_is_heard_answered_and_the_answer_is_intelligible(
    mesh: LocalMesh, jfk_wav: Path
) -> None:
    result = await place_call(mesh.edge_url, mesh.token, [jfk_wav], agent="listener", turn_timeout_s=30)
    assert result.errors == [] and result.ok, result.errors
    assert result.greeting.startswith("Hello. Go ahead")
    assert wer(JFK_TEXT, result.transcript) <= 0.15, result.transcript

    assert result.reply_text.startswith("Thank you. I heard")
    assert result.reply_audio_seconds > 2.0
    assert rms_dbfs(result.reply_audio) > -40.0  # speech, not silence
    heard = await transcribe(mesh, result.reply_audio)
    assert wer(result.reply_text, heard) <= 0.20, (result.reply_text, heard)

    lat = result.latency_ms
    for stage in ("endpoint", "stt_final", "first_token", "tts_first_audio", "voice_to_voice"):
        value = getattr(lat, stage)
        assert value is not None and value >= 0, stage
    # voice-to-voice on the caller's clock spans the whole pipeline
    assert lat.voice_to_voice >= lat.endpoint  # type: ignore[operator]
    assert result.ended_by == "agent"  # the listener hangs up after answering


async def test_a_booking_conversation_over_four_caller_turns(mesh: LocalMesh) -> None:
    wavs = [FIXTURES / f"caller_{n}.wav" for n in ("party", "when", "name", "yes")]
    result = await place_call(mesh.edge_url, mesh.token, wavs, turn_timeout_s=30)
    assert result.ok, result.errors
    replies = [t.reply_text for t in result.turns]
    heard = [(t.transcript, t.reply_text) for t in result.turns]
    assert "How many people" in result.greeting
    assert "day" in replies[0].lower(), heard
    assert "name" in replies[1].lower(), heard
    assert re.search(r"table for four, tomorrow at 7:30 PM, under the name Alice", replies[2]), heard
    assert "booked" in replies[3].lower(), heard
    assert result.ended_by == "agent"

    events = await fetch_events(mesh.nats_url, result.session_id)
    names = [event_name(e) for e in events]
    for expected in (
        "call_started",
        "assigned",
        "speech_started",
        "turn_ended",
        "transcript",
        "response",
        "speech_synthesized",
        "turn_latency",
        "playout_finished",
        "call_ended",
    ):
        assert expected in names, (expected, names)
    services = {e.service for e in events}
    assert services >= {"media-edge", "session-router", "stt", "reasoning", "tts"}
    assert names.count("turn_latency") == 4


async def test_every_service_exports_stage_latency_metrics(mesh: LocalMesh) -> None:
    import urllib.request

    def scrape(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    texts = {name: await asyncio.to_thread(scrape, port) for name, port in mesh.ports.metrics.items()}
    for name, text in texts.items():
        assert "voicemesh_stage_latency_seconds" in text, name
    edge = texts["media-edge"]
    assert 'voicemesh_stage_latency_seconds_count{service="media-edge",stage="voice_to_voice"}' in edge


async def test_the_edge_refuses_a_caller_without_the_token(mesh: LocalMesh) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(mesh.edge_url, additional_headers={"Authorization": "Bearer wrong"}):
            pass
    assert info.value.response.status_code == 401


async def test_a_malformed_start_gets_a_clear_error_and_the_edge_keeps_serving(mesh: LocalMesh) -> None:
    headers = {"Authorization": f"Bearer {mesh.token}"}
    async with websockets.connect(mesh.edge_url, additional_headers=headers) as ws:
        await ws.send('{"start": {"sample_rate_hz": 11025}}')
        reply = await asyncio.wait_for(ws.recv(), 5)
    assert "11025" in str(reply) and "not supported" in str(reply)
    async with websockets.connect(mesh.edge_url, additional_headers=headers) as ws:
        await ws.send("this is not json")
        reply = await asyncio.wait_for(ws.recv(), 5)
    assert "bad_message" in str(reply)
    # the same edge still places a real call
    result = await place_call(mesh.edge_url, mesh.token, [FIXTURES / "caller_party.wav"], turn_timeout_s=30)
    assert result.ok and "day" in result.reply_text.lower()


async def test_an_unknown_agent_is_named_in_the_error(mesh: LocalMesh) -> None:
    with pytest.raises(CallFailed, match=r"unknown agent 'nobody'; known agents: .*restaurant"):
        await place_call(mesh.edge_url, mesh.token, [FIXTURES / "caller_yes.wav"], agent="nobody")


async def test_stt_service_rejects_a_wrong_format_and_keeps_serving(mesh: LocalMesh) -> None:
    async with stt_channel(mesh) as ch:
        call = stt_pb2_grpc.SpeechToTextStub(ch).Recognize()
        await call.write(
            stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(
                    session_id="bad", format=audio_pb2.AudioFormat(sample_rate_hz=44100), language="en"
                )
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "format" in (info.value.details() or "")
    assert "Alice" in await transcribe(mesh, (FIXTURES / "caller_name.wav").read_bytes()[44:])


async def test_agent_audio_is_paced_in_real_time(mesh: LocalMesh) -> None:
    """The edge plays the greeting as a phone would: 20 ms of audio per 20 ms, not in a burst."""
    from voicemesh.cli.wsclient import decode

    headers = {"Authorization": f"Bearer {mesh.token}"}
    audio = 0
    start_at = end_at = 0.0
    loop = asyncio.get_running_loop()
    async with websockets.connect(mesh.edge_url, additional_headers=headers) as ws:
        await ws.send('{"start": {"sample_rate_hz": 16000}}')
        async with asyncio.timeout(30):
            while not end_at:
                raw = await ws.recv()
                if isinstance(raw, bytes):
                    audio += len(raw)
                    continue
                msg = decode(raw)
                if msg.WhichOneof("kind") == "mark" and msg.mark.name == "start":
                    start_at = loop.time()
                elif msg.WhichOneof("kind") == "mark" and msg.mark.name == "end":
                    end_at = loop.time()
    seconds = audio / 32000
    assert seconds > 2.0
    # sent ahead by at most a couple of frames: the wall time spans the audio's duration
    assert end_at - start_at >= seconds - 0.1, (end_at - start_at, seconds)


async def test_a_caller_that_sends_no_audio_is_ended_with_a_reason(mesh: LocalMesh) -> None:
    """A session with no media does not hold an edge slot for ever (keepalive pings alone
    kept such a call open before): after the media timeout (10 s) the edge ends it."""
    from voicemesh.cli.wsclient import decode

    headers = {"Authorization": f"Bearer {mesh.token}"}
    loop = asyncio.get_running_loop()
    async with websockets.connect(mesh.edge_url, additional_headers=headers) as ws:
        await ws.send('{"start": {"sample_rate_hz": 16000}}')
        began = loop.time()
        reason = None
        async with asyncio.timeout(40):
            while reason is None:
                raw = await ws.recv()
                if isinstance(raw, str) and (msg := decode(raw)).WhichOneof("kind") == "end":
                    reason = msg.end.reason
        ended_after = loop.time() - began
        with pytest.raises(websockets.ConnectionClosed):  # and the edge closes the socket
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert reason == "no_media"
    assert ended_after >= 9.0  # not before the timeout: the greeting alone took a few seconds


async def test_a_silent_caller_is_asked_whether_they_are_still_there(mesh: LocalMesh) -> None:
    from voicemesh.cli.wsclient import decode

    headers = {"Authorization": f"Bearer {mesh.token}"}
    responses: list[str] = []
    async with websockets.connect(mesh.edge_url, additional_headers=headers) as ws:
        await ws.send('{"start": {"agent": "nudger"}}')

        async def silence() -> None:
            while True:  # a phone line with nobody speaking
                await ws.send(b"\0" * 640)
                await asyncio.sleep(0.02)

        sender = asyncio.create_task(silence())
        try:
            async with asyncio.timeout(20):
                while len(responses) < 2:
                    raw = await ws.recv()
                    if isinstance(raw, str):
                        msg = decode(raw)
                        if msg.WhichOneof("kind") == "response" and msg.response.final:
                            responses.append(msg.response.text)
        finally:
            sender.cancel()
    assert responses[0].startswith("Hi.")
    assert responses[1].startswith("Are you still there?"), responses


async def test_asking_for_a_person_transfers_the_call_and_the_caller_is_told_where(mesh: LocalMesh) -> None:
    wavs = [FIXTURES / "caller_person.wav", FIXTURES / "caller_yes.wav"]
    result = await place_call(mesh.edge_url, mesh.token, wavs, turn_timeout_s=30)
    assert result.ok, result.errors
    assert "put you through" in result.turns[0].reply_text, result.turns[0]
    assert result.transferred_to == "sip:host@bellavista.example"
    assert result.end_reason == "transfer"
    assert [Path(u).name for u in result.unanswered] == ["caller_yes.wav"]  # handed on before it
    events = await fetch_events(mesh.nats_url, result.session_id)
    (transferred,) = [e.call_transferred for e in events if event_name(e) == "call_transferred"]
    assert (transferred.target, transferred.method) == ("[TARGET]", "native")  # masked, as by default
    (ended,) = [e.call_ended for e in events if event_name(e) == "call_ended"]
    assert ended.reason == "transfer"


async def test_a_call_longer_than_its_lease_keeps_its_reservations(mesh: LocalMesh) -> None:
    """The e2e mesh's router lease is LEASE_S (3 s): the edge renews a live call's
    reservations, so a four-turn call (~20 s) holds its stt, reasoning and tts slots from
    start to end, and gives them back when it ends (a crashed edge's would expire)."""
    import redis.asyncio as aioredis

    from voicemesh.mesh.registry import Keys

    from .conftest import LEASE_S

    keys = Keys()
    valkey = aioredis.Redis.from_url(mesh.redis_url)  # the mesh's read-only cli user

    async def held() -> int:
        """Unexpired reservations on every instance of every role."""
        now_ms = int(time.time() * 1000)
        count = 0
        for service in ("stt", "reasoning", "tts"):
            for member in await valkey.smembers(keys.members(service)):
                load = keys.load(service, member.decode())
                count += await valkey.zcount(load, f"({now_ms}", "+inf")
        return count

    wavs = [FIXTURES / f"caller_{n}.wav" for n in ("party", "when", "name", "yes")]
    call = asyncio.create_task(place_call(mesh.edge_url, mesh.token, wavs, turn_timeout_s=30))
    deadline = time.monotonic() + 30
    while await held() < 3:  # the call is placed
        assert time.monotonic() < deadline and not call.done(), "the call never held its slots"
        await asyncio.sleep(0.05)
    first_held = time.monotonic()
    longest = 0.0
    while not call.done():
        if await held() < 3:
            break
        longest = time.monotonic() - first_held
        await asyncio.sleep(0.1)
    result = await call
    assert result.ok, result.errors
    assert longest > 2 * LEASE_S, f"the slots were held {longest:.1f} s of a call longer than its lease"
    assert not call.cancelled()
    released = time.monotonic() + 5
    while await held() > 0:  # given back at the end, not left to expire
        assert time.monotonic() < released, "the slots were not released"
        await asyncio.sleep(0.05)
    await valkey.aclose()
