"""The TextToSpeech service with the real piper voice over a real grpc.aio server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from voicemesh.audio.frames import rms_dbfs
from voicemesh.v1 import audio_pb2

pytestmark = pytest.mark.integration

TWO_SENTENCES = "Hello, and thank you for calling the clinic today. How can I help you?"


def words(text: str) -> int:
    return len(text.split())


def assert_plausible_duration(audio_ms: int, text: str) -> None:
    # Conversational speech runs at roughly 2 to 4 words a second.
    n = words(text)
    assert n / 5.0 * 1000 <= audio_ms <= n / 1.5 * 1000, f"{audio_ms} ms for {n} words"


async def test_a_two_sentence_response_is_framed_marked_and_audible(tts: Any) -> None:
    client = tts.open()
    client.text("r1", TWO_SENTENCES[:20])
    client.text("r1", TWO_SENTENCES[20:])
    client.end("r1")
    await client.wait_for(lambda: client.ended("r1"), what="the end mark")
    client.close()
    await client.wait_for(lambda: client.done, what="the stream to close")
    assert client.error is None

    frames = client.frames("r1")
    assert frames and all(len(f.pcm) == 640 for f in frames)
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert [f.timestamp for f in frames] == [320 * i for i in range(len(frames))]

    marks = client.marks("r1")
    assert [m.name for m in marks] == ["clause", "clause", "end"]
    assert [m.text for m in marks[:2]] == [
        "Hello, and thank you for calling the clinic today.",
        "How can I help you?",
    ]
    assert marks[0].audio_offset_ms == 0 < marks[1].audio_offset_ms < marks[2].audio_offset_ms
    assert marks[2].audio_offset_ms == 20 * len(frames)
    kinds = ["mark" if r.HasField("mark") else "audio" for r in client.responses]
    assert kinds[0] == "mark" and kinds[-1] == "mark"  # a clause mark leads, "end" follows

    pcm = client.pcm("r1")
    assert rms_dbfs(pcm) > -30.0  # speech, not silence (digital silence is -120)
    assert_plausible_duration(20 * len(frames), TWO_SENTENCES)

    (event,) = [e.speech_synthesized for e in tts.events.events]
    assert event.response_id == "r1" and not event.cancelled
    assert event.audio_ms == 20 * len(frames) and event.first_audio_ms > 0
    assert tts.events.events[0].session_id == "call1"


@pytest.mark.parametrize(("rate", "frame_bytes"), [(8000, 320), (24000, 960), (48000, 1920)])
async def test_other_output_rates_are_resampled(tts: Any, rate: int, frame_bytes: int) -> None:
    client = tts.open(sample_rate=rate)
    client.text("r1", TWO_SENTENCES)
    client.end("r1")
    await client.wait_for(lambda: client.ended("r1"), what="the end mark")
    frames = client.frames("r1")
    assert all(len(f.pcm) == frame_bytes for f in frames)
    assert [f.timestamp for f in frames] == [frame_bytes // 2 * i for i in range(len(frames))]
    assert rms_dbfs(client.pcm("r1")) > -30.0
    assert_plausible_duration(20 * len(frames), TWO_SENTENCES)


async def test_first_audio_arrives_before_the_rest_of_the_text_is_sent(tts: Any) -> None:
    client = tts.open()
    sent = time.monotonic()
    client.text("r1", "Well, okay then, ")  # a short first clause, no sentence end yet
    client.text("r1", "let me")
    await client.wait_for(lambda: bool(client.frames("r1")), what="the first frame")
    first_audio_s = client.received_at[1] - sent  # [0] is the clause mark
    # The rest of the reply does not exist yet: audio started from the first clause alone.
    assert [m.text for m in client.marks("r1")] == ["Well, okay then,"]
    client.text("r1", " check that booking for you.")
    client.end("r1")
    await client.wait_for(lambda: client.ended("r1"), what="the end mark")
    assert [m.name for m in client.marks("r1")] == ["clause", "clause", "end"]
    print(f"first audio of a streamed response: {first_audio_s * 1000:.0f} ms")


async def test_cancel_stops_a_response_and_the_next_one_still_works(tts: Any) -> None:
    client = tts.open()
    long_reply = " ".join(
        f"This is sentence number {i} of a long answer that the caller will interrupt." for i in range(12)
    )
    client.text("r1", long_reply)
    client.end("r1")
    await client.wait_for(lambda: bool(client.frames("r1")), what="r1's first frame")
    client.cancel("r1")
    client.text("r2", "Sure, go ahead.")
    client.end("r2")
    await client.wait_for(lambda: client.ended("r2"), what="r2's end mark")

    assert not client.ended("r1")
    r1_ms = 20 * len(client.frames("r1"))
    assert r1_ms < 10_000  # the whole reply is about 50 s of speech
    # Every r1 frame came before r2's audio: nothing of r1 trickled in afterwards.
    ids = [r.audio.response_id for r in client.responses if r.HasField("audio")]
    assert ids == ["r1"] * ids.count("r1") + ["r2"] * ids.count("r2")
    assert rms_dbfs(client.pcm("r2")) > -30.0
    sequences = [f.sequence for f in client.frames()]
    assert sequences == list(range(len(sequences)))  # gapless across responses
    by_id = {e.speech_synthesized.response_id: e.speech_synthesized for e in tts.events.events}
    assert by_id["r1"].cancelled and not by_id["r2"].cancelled


async def test_an_unknown_voice_is_rejected_and_the_server_keeps_serving(tts: Any) -> None:
    bad = tts.open(voice="en_US-nobody-high")
    await bad.wait_for(lambda: bad.done, what="the rejection")
    assert bad.error is not None and bad.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "en_US-nobody-high" in (bad.error.details() or "")
    assert (
        tts.metrics.registry.get_sample_value(
            "voicemesh_errors_total", {"service": "tts", "kind": "invalid_config"}
        )
        == 1
    )

    good = tts.open(voice="en_US-joe-medium", session_id="call2")
    good.text("r1", "Still here.")
    good.end("r1")
    await good.wait_for(lambda: good.ended("r1"), what="the end mark")
    assert good.frames("r1")


@pytest.mark.parametrize(
    ("open_kwargs", "named"),
    [
        ({"sample_rate": 44100}, "format.sample_rate_hz 44100"),
        ({"fmt": audio_pb2.AudioFormat(sample_rate_hz=16000)}, "format.encoding"),
        ({"session_id": ""}, "config.session_id is empty"),
        ({"session_id": "a.b"}, "config.session_id"),
    ],
)
async def test_bad_configs_are_rejected_naming_the_field(
    tts: Any, open_kwargs: dict[str, Any], named: str
) -> None:
    client = tts.open(**open_kwargs)
    await client.wait_for(lambda: client.done, what="the rejection")
    assert client.error is not None and client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (client.error.details() or "")


async def test_text_before_config_is_rejected(tts: Any) -> None:
    client = tts.open()
    client.requests.get_nowait()  # take the config back out
    client.text("r1", "Hello.")
    await client.wait_for(lambda: client.done, what="the rejection")
    assert client.error is not None and client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first request must carry config" in (client.error.details() or "")


async def test_text_after_the_end_of_a_response_is_a_protocol_error(tts: Any) -> None:
    client = tts.open()
    client.text("r1", "Hi.")
    client.end("r1")
    client.text("r1", "More?")
    await client.wait_for(lambda: client.done, what="the rejection")
    assert client.error is not None and client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after its end" in (client.error.details() or "")


async def test_two_streams_at_once_are_both_served(tts: Any) -> None:
    a, b = tts.open(session_id="a"), tts.open(session_id="b")
    for client in (a, b):
        client.text("r1", TWO_SENTENCES)
        client.end("r1")
    for client in (a, b):
        await client.wait_for(lambda c=client: c.ended("r1"), what="the end mark")
        assert rms_dbfs(client.pcm("r1")) > -30.0
    # each stream reports its speech once its end mark has gone out: the mark can reach the
    # client before the stream's task has gone on to report, so the report is waited for
    async with asyncio.timeout(5):
        while not (tts.events.names("a") and tts.events.names("b")):
            await asyncio.sleep(0.01)
    assert tts.events.names("a") == tts.events.names("b") == ["speech_synthesized"]
