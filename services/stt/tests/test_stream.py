"""The stream shell with a fake engine and VAD: ordering, reuse, failures, one decode at a time,
the client's VAD, and media time kept across lost and dropped frames."""

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
from voicemesh.stt.stream import InvalidInput, RecognizeStream, StreamLimits
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
        self.sequence = 0  # of the next frame
        self.write_gate: asyncio.Event | None = None  # set: writes wait for it

    def send(self, *frames: bytes, speech_probability: float = 0.0) -> None:
        """Frames numbered one after another, like a real sender."""
        for pcm in frames:
            self.send_frame(pcm, self.sequence, speech_probability)

    def send_frame(self, pcm: bytes, sequence: int, speech_probability: float = 0.0) -> None:
        frame = audio_pb2.AudioFrame(sequence=sequence, pcm=pcm, speech_probability=speech_probability)
        self.requests.put_nowait(stt_pb2.RecognizeRequest(audio=frame))
        self.sequence = sequence + 1

    def flush(self, flush_id: str) -> None:
        self.requests.put_nowait(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id=flush_id)))

    def close(self) -> None:
        self.requests.put_nowait(None)

    async def stream(self) -> AsyncIterator[stt_pb2.RecognizeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    async def write(self, response: stt_pb2.RecognizeResponse) -> None:
        if self.write_gate is not None:
            await self.write_gate.wait()
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
    engine: FakeEngine,
    partials: bool = True,
    internal: bool = False,
    vad: LevelVad | None = None,
    client_vad: bool = False,
    limits: StreamLimits | None = None,
) -> tuple[RecognizeStream, ServiceMetrics, RecordingEvents]:
    metrics = ServiceMetrics.create("stt")
    events = RecordingEvents()
    segmenter = SegmenterConfig(partials=partials, internal_endpointing=internal)
    config = StreamConfig("call-7", "en", segmenter, client_vad=client_vad)
    stream = RecognizeStream(
        config,
        engine=engine,
        vad=vad or LevelVad(),
        metrics=metrics,
        events=events,
        tracer=trace.NoOpTracer(),
        limits=limits,
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


def utterance_times(client: Client) -> list[tuple[str, int, int]]:
    return [(f.flush_id, f.audio_start_ms, f.audio_end_ms) for f in client.finals()]


async def test_with_client_vad_the_clients_probabilities_segment_and_no_vad_runs() -> None:
    engine = FakeEngine()
    vad = LevelVad()  # would hear the LOUD frames and not the QUIET ones
    stream, _, _ = make_stream(engine, partials=False, vad=vad, client_vad=True)
    client = Client()
    client.send(*[LOUD] * 10, speech_probability=0.0)
    client.send(*[QUIET] * 50, speech_probability=0.9)  # the client says this is speech
    client.send(*[LOUD] * 20, speech_probability=0.1)
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    assert vad.frames == 0
    assert client.kinds() == ["KIND_STARTED", "KIND_ENDED", "final"]
    assert utterance_times(client) == [("f1", 0, 1360)]  # as if QUIET were LOUD
    assert engine.decoded == [10 + 50 + 8]


async def test_a_stream_with_client_vad_needs_no_vad() -> None:
    engine = FakeEngine()
    config = StreamConfig("call-7", "en", SegmenterConfig(partials=False), client_vad=True)
    metrics, events = ServiceMetrics.create("stt"), RecordingEvents()
    stream = RecognizeStream(
        config, engine=engine, vad=None, metrics=metrics, events=events, tracer=trace.NoOpTracer()
    )
    client = Client()
    client.send(*[QUIET] * 20, speech_probability=0.9)
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    assert utterance_times(client) == [("f1", 0, 400)]
    with pytest.raises(ValueError, match="needs a VAD"):
        RecognizeStream(
            StreamConfig("call-7", "en", SegmenterConfig()),
            engine=engine,
            vad=None,
            metrics=metrics,
            events=events,
            tracer=trace.NoOpTracer(),
        )


@pytest.mark.parametrize("prob", [float("nan"), -0.1, 1.5])
async def test_a_bad_speech_probability_is_invalid_input(prob: float) -> None:
    stream, _, _ = make_stream(FakeEngine(), client_vad=True)
    client = Client()
    client.send(LOUD, speech_probability=0.5)
    client.send(LOUD, speech_probability=prob)
    with pytest.raises(InvalidInput, match=r"audio\.speech_probability must be between 0 and 1") as err:
        await asyncio.wait_for(stream.run(client.stream(), client.write), 5)
    assert err.value.kind == "bad_frame"


async def test_without_client_vad_the_frames_probability_is_ignored() -> None:
    vad = LevelVad()
    stream, _, _ = make_stream(FakeEngine(), partials=False, vad=vad)
    client = Client()
    client.send(*[QUIET] * 10, *[LOUD] * 50, *[QUIET] * 20, speech_probability=float("nan"))
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    assert vad.frames == 80
    assert utterance_times(client) == [("f1", 0, 1360)]


async def test_frames_lost_upstream_keep_their_media_time() -> None:
    engine = FakeEngine()
    stream, metrics, _ = make_stream(engine, partials=False)
    client = Client()
    client.send(*[QUIET] * 10, *[LOUD] * 50, *[QUIET] * 20)  # sequence 0..79
    client.flush("f1")
    client.sequence = 100  # 80..99 never arrive
    client.send(*[QUIET] * 20, *[LOUD] * 50, *[QUIET] * 20)
    client.flush("f2")
    client.close()
    await stream.run(client.stream(), client.write)
    # the second utterance's speech starts at media frame 120 (300 ms pre-roll before it),
    # not at frame 100 as it would if the lost frames took no time
    assert utterance_times(client) == [("f1", 0, 1360), ("f2", 2100, 3560)]
    assert count(metrics, "voicemesh_dropped_total", what="frame_lost_upstream") == 20


async def test_a_wild_sequence_jump_fills_at_most_a_second() -> None:
    stream, metrics, _ = make_stream(FakeEngine(), partials=False)
    client = Client()
    client.send(*[QUIET] * 10)
    client.sequence = 10 + 10**12
    client.send(*[QUIET] * 20, *[LOUD] * 50, *[QUIET] * 20)
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    # 10 frames, then 50 of silence for the gap: speech from media frame 80
    assert utterance_times(client) == [("f1", (80 - 15) * 20, (130 + 8) * 20)]
    assert count(metrics, "voicemesh_dropped_total", what="frame_lost_upstream") == 10**12


async def test_a_repeated_or_earlier_sequence_is_dropped_and_counted() -> None:
    engine = FakeEngine()
    stream, metrics, _ = make_stream(engine, partials=False)
    client = Client()
    client.send(*[QUIET] * 10, *[LOUD] * 50, *[QUIET] * 5)  # sequence 0..64
    client.send_frame(LOUD, 64)  # a repeat
    client.send_frame(LOUD, 30)  # from the past
    client.sequence = 65
    client.send(*[QUIET] * 15)
    client.flush("f1")
    client.close()
    await stream.run(client.stream(), client.write)
    # neither LOUD frame counts as speech (nor as media time): the same final as without them
    assert utterance_times(client) == [("f1", 0, 1360)]
    assert engine.decoded == [68]
    assert count(metrics, "voicemesh_dropped_total", what="frame_out_of_order") == 2


async def test_frames_the_intake_drops_keep_their_media_time() -> None:
    engine = FakeEngine()
    stream, metrics, _ = make_stream(
        engine, partials=False, limits=StreamLimits(max_queued_frames=4, max_outbox=1)
    )
    client = Client()
    client.write_gate = asyncio.Event()  # the writer stalls, then the processor behind it
    client.send(*[QUIET] * 10, *[LOUD] * 20, *[QUIET] * 30)  # media frames 0..59
    client.flush("f1")
    client.send(*[QUIET] * 100)  # media frames 60..159: most are dropped by the intake
    runner = asyncio.create_task(stream.run(client.stream(), client.write))
    await until(lambda: client.requests.empty())
    dropped = count(metrics, "voicemesh_dropped_total", what="frame")
    assert dropped > 50
    client.write_gate.set()
    client.send(*[LOUD] * 20, *[QUIET] * 20)  # media frames 160..199
    client.flush("f2")
    client.close()
    await asyncio.wait_for(runner, 5)
    assert utterance_times(client)[1] == ("f2", (160 - 15) * 20, (180 + 8) * 20)
    assert count(metrics, "voicemesh_dropped_total", what="frame_lost_upstream") == 0
