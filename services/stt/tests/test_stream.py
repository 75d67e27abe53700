"""The stream shell with a fake engine and VAD: ordering, reuse, failures, one decode at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from opentelemetry import trace

from voicemesh.audio import FRAME_BYTES
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.stt.config import StreamConfig
from voicemesh.stt.engine import DecodeResult
from voicemesh.stt.segmenter import SegmenterConfig
from voicemesh.stt.stream import InvalidInput, RecognizeStream
from voicemesh.v1 import audio_pb2, stt_pb2

pytestmark = pytest.mark.unit

LOUD = (np.full(FRAME_BYTES // 2, 8000, dtype="<i2")).tobytes()
QUIET = bytes(FRAME_BYTES)


class LevelVad:
    """Speech probability from loudness: our frames are either LOUD or QUIET."""

    def __init__(self) -> None:
        self.frames = 0

    def process(self, frame: bytes) -> float:
        self.frames += 1
        return 0.9 if frame == LOUD else 0.0

    def reset(self) -> None:
        return None


class FakeEngine:
    """Answers "<n> frames" for n frames of audio; can be held by a gate or made to fail."""

    languages = frozenset({"en"})

    def __init__(self) -> None:
        self.pending = 0
        self.most_at_once = 0
        self.decoded: list[int] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def decode(self, audio: np.ndarray, language: str) -> DecodeResult:
        self.pending += 1
        self.most_at_once = max(self.most_at_once, self.pending)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise RuntimeError("engine broke")
            frames = len(audio) // (FRAME_BYTES // 2)
            self.decoded.append(frames)
            return DecodeResult(f"{frames} frames", 0.8, 0.01, 0.005)
        finally:
            self.pending -= 1


class Client:
    def __init__(self) -> None:
        self.requests: asyncio.Queue[stt_pb2.RecognizeRequest | None] = asyncio.Queue()
        self.responses: list[stt_pb2.RecognizeResponse] = []
        self.got_final = asyncio.Event()

    def send(self, *frames: bytes) -> None:
        for pcm in frames:
            self.requests.put_nowait(stt_pb2.RecognizeRequest(audio=audio_pb2.AudioFrame(pcm=pcm)))

    def flush(self, flush_id: str) -> None:
        self.requests.put_nowait(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id=flush_id)))

    def close(self) -> None:
        self.requests.put_nowait(None)

    async def stream(self) -> AsyncIterator[stt_pb2.RecognizeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    async def write(self, response: stt_pb2.RecognizeResponse) -> None:
        self.responses.append(response)
        if response.HasField("transcript") and response.transcript.final:
            self.got_final.set()

    def kinds(self) -> list[str]:
        out = []
        for r in self.responses:
            if r.HasField("speech"):
                out.append(stt_pb2.SpeechEvent.Kind.Name(r.speech.kind))
            else:
                out.append("final" if r.transcript.final else "partial")
        return out

    def finals(self) -> list[stt_pb2.Transcript]:
        return [r.transcript for r in self.responses if r.HasField("transcript") and r.transcript.final]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def make_stream(
    engine: FakeEngine, partials: bool = True, internal: bool = False, vad: LevelVad | None = None
) -> tuple[RecognizeStream, ServiceMetrics, RecordingEvents]:
    metrics = ServiceMetrics.create("stt")
    events = RecordingEvents()
    config = StreamConfig("call-7", "en", SegmenterConfig(partials=partials, internal_endpointing=internal))
    stream = RecognizeStream(
        config,
        engine=engine,
        vad=vad or LevelVad(),
        metrics=metrics,
        events=events,
        tracer=trace.NoOpTracer(),
    )
    return stream, metrics, events


def count(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "stt", **labels}) or 0.0


async def test_final_after_a_pause_costs_no_extra_decode() -> None:
    engine = FakeEngine()
    stream, metrics, events = make_stream(engine, partials=False)
    client = Client()
    client.send(*[QUIET] * 10, *[LOUD] * 50, *[QUIET] * 20)
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    assert client.kinds() == ["KIND_STARTED", "KIND_ENDED", "final"]
    (final,) = client.finals()
    # 200 ms pre-roll (all there was) + 1 s speech + 160 ms tail, decoded once and reused
    assert engine.decoded == [10 + 50 + 8]
    assert (final.text, final.flush_id, final.audio_start_ms, final.audio_end_ms) == (
        "68 frames",
        "f1",
        0,
        1360,
    )
    assert events.names("call-7") == ["transcript"]
    assert count(metrics, "voicemesh_stage_latency_seconds_count", stage="stt_final") == 1


async def test_a_stream_never_has_two_decodes_on_the_engine() -> None:
    engine = FakeEngine()
    engine.gate = asyncio.Event()
    vad = LevelVad()
    stream, _, _ = make_stream(engine, partials=True, vad=vad)
    client = Client()
    client.send(*[LOUD] * 100, *[QUIET] * 10, *[LOUD] * 100)
    client.flush("f1")
    client.close()
    runner = asyncio.create_task(stream.run(client.stream(), client.write))
    await until(lambda: vad.frames == 210)  # every frame is in while the engine is held
    assert engine.decoded == [] and engine.pending == 1
    engine.gate.set()
    await asyncio.wait_for(runner, 5)
    assert engine.most_at_once == 1
    # one partial (the engine was busy afterwards) and the final; the speculative decode
    # taken at the pause went stale with the new speech and was dropped before it ran
    assert engine.decoded == [30, 210]
    assert client.kinds() == ["KIND_STARTED", "partial", "KIND_ENDED", "final"]
    assert client.finals()[0].text == "210 frames"


async def test_a_failed_decode_still_answers_the_flush() -> None:
    engine = FakeEngine()
    engine.fail = True
    stream, metrics, events = make_stream(engine, partials=False)
    client = Client()
    client.send(*[LOUD] * 50)
    client.flush("f1")
    client.send(*[LOUD] * 50, *[QUIET] * 50)
    client.close()
    await stream.run(client.stream(), client.write)
    (final,) = client.finals()  # the end-of-input final is empty too, so it is not sent
    assert (final.text, final.flush_id) == ("", "f1")
    assert count(metrics, "voicemesh_errors_total", kind="decode") >= 1
    assert [e.transcript.text for e in events.events] == [""]


async def test_internal_endpoint_without_words_sends_no_final() -> None:
    engine = FakeEngine()
    stream, _, _ = make_stream(engine, partials=False, internal=True)
    client = Client()
    client.send(*[QUIET] * 10, LOUD, LOUD, *[QUIET] * 60)  # a 40 ms click
    client.close()
    await stream.run(client.stream(), client.write)
    assert engine.decoded == []
    assert client.kinds() == ["KIND_STARTED", "KIND_ENDED"]


async def test_a_wrong_sized_frame_is_invalid_input() -> None:
    stream, _, _ = make_stream(FakeEngine())
    client = Client()
    client.send(LOUD, LOUD[:100])
    with pytest.raises(InvalidInput, match="640 bytes"):
        await asyncio.wait_for(stream.run(client.stream(), client.write), 5)


async def test_the_speculative_decode_at_a_pause_is_also_a_partial() -> None:
    engine = FakeEngine()
    stream, _, _ = make_stream(engine, partials=True)
    client = Client()
    client.send(*[LOUD] * 20, *[QUIET] * 20)  # too short for a partial while speaking
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    assert client.kinds() == ["KIND_STARTED", "partial", "KIND_ENDED", "final"]
    partial, final = (r.transcript for r in client.responses if r.HasField("transcript"))
    assert partial.text == final.text == "28 frames"
    assert engine.decoded == [28]
