"""Against a real NATS JetStream: what the stream stores of a call holds no caller's number
or card, only their placeholders."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest
from nats.js.errors import NotFoundError

from voicemesh.mesh.events import STREAM_NAME, JetStreamEvents, subject_for
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import events_pb2

pytestmark = pytest.mark.integration

SAID = "my number is 212, 555, 0187 and my card is 4111 1111 1111 1111"
RAW_RUNS = (b"212, 555, 0187", b"2125550187", b"555", b"0187", b"4111", b"1111 1111", b"14155550100")


async def stored(url: str, subject: str) -> bytes:
    """The bytes JetStream holds for the last message on `subject` (waits for it to arrive)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 5
        while True:
            try:
                return bytes((await js.get_last_msg(STREAM_NAME, subject)).data or b"")
            except NotFoundError:
                assert time.monotonic() < deadline, f"nothing stored on {subject}"
                await asyncio.sleep(0.02)
    finally:
        await nc.close()


async def publish_call(url: str, redact: bool) -> tuple[bytes, bytes]:
    """Emit a call's start and a transcript through a JetStreamEvents; the stored bytes of both."""
    sink = JetStreamEvents("stt", "stt-0", ServiceMetrics.create("stt"), redact=redact)
    await sink.connect(url)
    # No digits in the id: a random hex id holds "555" or "0187" now and then, which the raw
    # byte check below would take for a leak.
    session = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
    try:
        sink.emit(
            session, call_started=events_pb2.CallStarted(transport="twilio-stream", caller="+14155550100")
        )
        sink.emit(
            session, transcript=events_pb2.TranscriptPublished(utterance_id="u1", text=SAID, final=True)
        )
        started = await stored(url, subject_for(session, "call_started"))
        transcript = await stored(url, subject_for(session, "transcript"))
    finally:
        await sink.close()
    return started, transcript


async def test_the_stream_stores_placeholders_not_the_callers_number_or_card(nats_url: str) -> None:
    started, transcript = await publish_call(nats_url, redact=True)
    for data in (started, transcript):
        leaked = [raw for raw in RAW_RUNS if raw in data]
        assert not leaked, f"{leaked} stored in JetStream: {data!r}"
    assert b"[PHONE]" in transcript and b"[CARD]" in transcript
    event = events_pb2.SessionEvent.FromString(transcript)
    assert event.transcript.text == "my number is [PHONE] and my card is [CARD]"
    assert (event.transcript.utterance_id, event.transcript.final, event.service) == ("u1", True, "stt")
    assert events_pb2.SessionEvent.FromString(started).call_started.caller == "[PHONE]"


async def test_with_redaction_off_the_raw_values_are_stored(nats_url: str) -> None:
    """The control: the check above would see a raw value if one were published."""
    started, transcript = await publish_call(nats_url, redact=False)
    assert SAID.encode() in transcript and b"+14155550100" in started
