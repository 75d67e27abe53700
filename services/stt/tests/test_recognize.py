"""Recognize over a real grpc.aio server with the real Whisper and Silero models."""

from __future__ import annotations

import asyncio
import re

import grpc
import jiwer
import pytest

from voicemesh.audio import SileroModel, SileroVad
from voicemesh.v1 import audio_pb2, stt_pb2

from .conftest import JFK_TEXT, SttHarness

pytestmark = pytest.mark.integration

FIRST_PHRASE_FRAMES = 116  # 2.32 s: the clip up to the first pause


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]", " ", text.lower())).strip()


def is_first_phrase(text: str) -> bool:
    """tiny.en hears the opening either as "and so my" or "and so am i"."""
    said = normalise(text)
    return said.startswith("and so") and said.endswith("fellow americans")


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


async def test_flush_after_the_clip_gives_an_accurate_final_after_partials(
    stt: SttHarness, jfk_frames: list[bytes]
) -> None:
    talk = await stt.open()
    await talk.frames(jfk_frames + talk.silence(1000))
    await talk.flush("turn-1")
    final = (await talk.read_until("final")).response.transcript
    await talk.call.done_writing()
    await talk.read_until("eof")

    assert final.flush_id == "turn-1"
    assert wer(JFK_TEXT, final.text) <= 0.15, final.text
    kinds = talk.kinds()
    assert kinds[0] == "KIND_STARTED"
    assert "partial" in kinds and kinds.index("partial") < kinds.index("final")
    assert kinds.count("final") == 1  # half-close after the flush adds nothing
    assert final.audio_end_ms > final.audio_start_ms
    assert 0.0 < final.confidence <= 1.0
    published = [e.transcript for e in stt.events.events if e.HasField("transcript")]
    assert [(p.utterance_id, p.text, p.final) for p in published] == [(final.utterance_id, final.text, True)]
    assert stt.events.events[0].session_id == "call-1"
    assert stt.metric("voicemesh_stage_latency_seconds_count", stage="stt_decode") >= 2
    assert stt.metric("voicemesh_stage_latency_seconds_count", stage="stt_final") == 1
    assert stt.metric("voicemesh_sessions_total", outcome="ok") == 1
    assert stt.metric("voicemesh_dropped_total", what="frame") == 0
    (span,) = utterance_spans(stt)
    assert span.attributes["stt.final_reason"] == "flush"


async def test_internal_endpointing_finalizes_each_phrase_by_itself(
    stt: SttHarness, jfk_frames: list[bytes]
) -> None:
    talk = await stt.open(
        stt.config(endpointing=stt_pb2.ENDPOINTING_INTERNAL, endpoint_silence_ms=500, partials=False)
    )
    await talk.frames(jfk_frames + talk.silence(1000))
    finals = []
    while len(finals) < 3:  # the clip has three pauses longer than 500 ms
        finals.append((await talk.read_until("final", timeout_s=20)).response.transcript)
    assert all(f.flush_id == "" for f in finals)
    assert is_first_phrase(finals[0].text), finals[0].text
    await talk.call.done_writing()
    await talk.read_until("eof")
    finals = talk.transcripts(final=True)
    assert wer(JFK_TEXT, " ".join(f.text for f in finals)) <= 0.15
    assert len({f.utterance_id for f in finals}) == len(finals)
    assert [f.audio_start_ms for f in finals] == sorted(f.audio_start_ms for f in finals)
    kinds = [k for k in talk.kinds() if k != "partial"]
    assert kinds[:3] == ["KIND_STARTED", "KIND_ENDED", "final"]


async def test_flush_right_after_start_gives_one_empty_final(stt: SttHarness) -> None:
    talk = await stt.open()
    await talk.flush("nothing-yet")
    final = (await talk.read_until("final")).response.transcript
    assert (final.text, final.flush_id, final.final) == ("", "nothing-yet", True)
    await talk.frames(talk.silence(500))
    await talk.flush("still-nothing")
    again = (await talk.read_until("final")).response.transcript
    assert (again.text, again.flush_id) == ("", "still-nothing")
    await talk.call.done_writing()
    await talk.read_until("eof")
    assert talk.kinds() == ["final", "final"]


async def test_half_close_finalizes_pending_speech(stt: SttHarness, jfk_frames: list[bytes]) -> None:
    talk = await stt.open(stt.config(partials=False))
    await talk.frames(jfk_frames[:FIRST_PHRASE_FRAMES])
    await talk.call.done_writing()
    await talk.read_until("eof")
    finals = talk.transcripts(final=True)
    assert len(finals) == 1
    assert is_first_phrase(finals[0].text), finals[0].text
    assert finals[0].flush_id == ""
    assert talk.kinds() == ["KIND_STARTED", "KIND_ENDED", "final"]
    assert await asyncio.wait_for(talk.call.code(), 10) == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (SttHarness.config(sample_rate_hz=8000), "config.format.sample_rate_hz"),
        (SttHarness.config(language="de"), "config.language"),
        (SttHarness.config(session_id="a.b"), "config.session_id"),
        (SttHarness.config(endpoint_silence_ms=50), "config.endpoint_silence_ms"),
    ],
)
async def test_a_bad_config_is_refused_and_the_server_keeps_serving(
    stt: SttHarness, config: stt_pb2.RecognizeRequest, field: str
) -> None:
    bad = await stt.open(config)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bad.read_until("final", timeout_s=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")
    assert stt.metric("voicemesh_errors_total", kind="bad_config") == 1

    good = await stt.open()
    await good.flush("ok")
    assert (await good.read_until("final")).response.transcript.flush_id == "ok"
    await good.call.done_writing()
    await good.read_until("eof")


async def test_bad_requests_end_only_their_own_stream(stt: SttHarness, jfk_frames: list[bytes]) -> None:
    first_not_config = stt.stub.Recognize()
    await first_not_config.write(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id="x")))
    assert await asyncio.wait_for(first_not_config.code(), 10) == grpc.StatusCode.INVALID_ARGUMENT
    assert "config" in (await first_not_config.details() or "")

    live = await stt.open(stt.config(session_id="call-live"))
    await live.frames(jfk_frames[:50])

    short = await stt.open(stt.config(session_id="call-short"))
    await short.frames([b"\0" * 320])
    assert await asyncio.wait_for(short.call.code(), 10) == grpc.StatusCode.INVALID_ARGUMENT
    assert "640 bytes" in (await short.call.details() or "")
    assert stt.metric("voicemesh_errors_total", kind="bad_frame") == 1

    await live.frames(jfk_frames[50:FIRST_PHRASE_FRAMES] + live.silence(400))
    await live.flush("still-here")
    final = (await live.read_until("final")).response.transcript
    assert is_first_phrase(final.text), final.text
    await live.call.done_writing()
    await live.read_until("eof")


async def test_with_client_vad_the_senders_probabilities_segment_the_call(
    stt: SttHarness, silero: SileroModel, jfk_frames: list[bytes]
) -> None:
    talk = await stt.open(stt.config(client_vad=True, partials=False))
    vad = SileroVad(silero)  # the sender's (media-edge's) one VAD decision per frame
    frames = jfk_frames[:FIRST_PHRASE_FRAMES] + talk.silence(400)
    for seq, pcm in enumerate(frames):
        audio = audio_pb2.AudioFrame(sequence=seq, pcm=pcm, speech_probability=vad.process(pcm))
        await talk.call.write(stt_pb2.RecognizeRequest(audio=audio))
    await talk.flush("client-vad")
    final = (await talk.read_until("final")).response.transcript
    await talk.call.done_writing()
    await talk.read_until("eof")
    assert is_first_phrase(final.text), final.text
    assert final.audio_start_ms == 40  # 300 ms of pre-roll before the onset at 340 ms


async def test_a_nan_speech_probability_ends_the_stream_naming_the_field(
    stt: SttHarness, jfk_frames: list[bytes]
) -> None:
    talk = await stt.open(stt.config(client_vad=True))
    await talk.call.write(
        stt_pb2.RecognizeRequest(
            audio=audio_pb2.AudioFrame(sequence=0, pcm=jfk_frames[0], speech_probability=float("nan"))
        )
    )
    assert await asyncio.wait_for(talk.call.code(), 10) == grpc.StatusCode.INVALID_ARGUMENT
    assert "audio.speech_probability" in (await talk.call.details() or "")
    assert stt.metric("voicemesh_errors_total", kind="bad_frame") == 1


def utterance_spans(stt: SttHarness) -> list:
    return [s for s in stt.spans.get_finished_spans() if s.name == "stt.utterance"]


async def test_final_after_a_pause_reuses_the_speculative_decode(
    stt: SttHarness, jfk_frames: list[bytes]
) -> None:
    talk = await stt.open(stt.config(partials=False))
    await talk.frames(jfk_frames[:FIRST_PHRASE_FRAMES] + talk.silence(400))
    await talk.flush("after-pause")
    final = (await talk.read_until("final")).response.transcript
    await talk.call.done_writing()
    await talk.read_until("eof")
    assert is_first_phrase(final.text), final.text
    (span,) = utterance_spans(stt)
    assert span.attributes["stt.reused_speculative"] is True
    assert stt.metric("voicemesh_stage_latency_seconds_count", stage="stt_decode") == 1


async def test_speech_after_a_speculative_decode_is_not_lost(
    stt: SttHarness, jfk_frames: list[bytes]
) -> None:
    talk = await stt.open(stt.config(partials=False))
    await talk.frames(jfk_frames[:FIRST_PHRASE_FRAMES] + talk.silence(400))
    await talk.frames(jfk_frames[160:225] + talk.silence(300))  # then "ask not"
    await talk.flush("more")
    final = (await talk.read_until("final")).response.transcript
    await talk.call.done_writing()
    await talk.read_until("eof")
    said = normalise(final.text)
    assert said.startswith("and so") and said.endswith("ask not"), final.text
