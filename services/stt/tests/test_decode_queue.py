"""The stt servicer's load and media metrics with a fake engine, driven through `Recognize`
without sockets: the decode queue counts decodes on the engine and decodes waiting for their
stream's turn, and goes back to 0 however they end (done, failed, the caller gone); frames
missing from the edge's sequence are lost and concealed frames under transport "grpc"."""

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
from voicemesh.stt.engine import DecodeResult
from voicemesh.stt.servicer import SttServicer
from voicemesh.v1 import audio_pb2, stt_pb2

pytestmark = pytest.mark.unit

LOUD = np.full(FRAME_BYTES // 2, 8000, dtype="<i2").tobytes()
QUIET = bytes(FRAME_BYTES)
PCM16 = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=16000, channels=1, frame_ms=20
)


class HeldEngine:
    """Decodes wait for `gate`; `fail` makes them raise. `pending` as the real engine's."""

    languages = frozenset({"en"})

    def __init__(self) -> None:
        self.pending = 0
        self.gate = asyncio.Event()
        self.fail = False

    async def decode(self, audio: np.ndarray, language: str) -> DecodeResult:
        self.pending += 1
        try:
            await self.gate.wait()
            if self.fail:
                raise RuntimeError("engine broke")
            return DecodeResult("words", 0.8, 0.01, 0.005)
        finally:
            self.pending -= 1

    def close(self) -> None:
        return None


class Context:
    """The parts of a grpc.aio servicer context `Recognize` uses."""

    def __init__(self) -> None:
        self.written: list[stt_pb2.RecognizeResponse] = []

    async def write(self, response: stt_pb2.RecognizeResponse) -> None:
        self.written.append(response)

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort(self, code: object, details: str) -> None:
        raise AssertionError(f"stream aborted: {details}")


class Caller:
    def __init__(self, servicer: SttServicer) -> None:
        self.requests: asyncio.Queue[stt_pb2.RecognizeRequest | None] = asyncio.Queue()
        self.sequence = 0
        config = stt_pb2.RecognitionConfig(
            session_id="call-9",
            format=PCM16,
            language="en",
            endpointing=stt_pb2.ENDPOINTING_EXTERNAL,
            partials=True,
            client_vad=True,
        )
        self.requests.put_nowait(stt_pb2.RecognizeRequest(config=config))
        self.context = Context()
        self.task = asyncio.create_task(servicer.Recognize(self._stream(), self.context))  # type: ignore[arg-type]

    async def _stream(self) -> AsyncIterator[stt_pb2.RecognizeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def send(self, pcm: bytes, n: int, speech: bool) -> None:
        for _ in range(n):
            frame = audio_pb2.AudioFrame(
                sequence=self.sequence, pcm=pcm, speech_probability=0.9 if speech else 0.0
            )
            self.requests.put_nowait(stt_pb2.RecognizeRequest(audio=frame))
            self.sequence += 1

    def flush(self, flush_id: str) -> None:
        self.requests.put_nowait(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id=flush_id)))

    def close(self) -> None:
        self.requests.put_nowait(None)


def make(engine: HeldEngine) -> tuple[SttServicer, ServiceMetrics]:
    metrics = ServiceMetrics.create("stt")
    servicer = SttServicer(engine, lambda: None, metrics, RecordingEvents(), trace.NoOpTracer())  # type: ignore[arg-type, return-value]
    return servicer, metrics


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "stt", **labels}) or 0.0


def depth(metrics: ServiceMetrics) -> float:
    return value(metrics, "voicemesh_queue_depth", queue="decode")


async def until(condition: Callable[[], bool], what: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def test_the_queue_counts_the_decode_on_the_engine_and_the_one_waiting_its_turn() -> None:
    engine = HeldEngine()
    servicer, metrics = make(engine)
    assert depth(metrics) == 0
    caller = Caller(servicer)
    caller.send(LOUD, 40, speech=True)  # a partial decode goes to the idle engine, and is held
    await until(lambda: engine.pending == 1, "the partial on the engine")
    assert depth(metrics) == 1
    caller.send(QUIET, 30, speech=False)
    caller.flush("t1")  # the final waits for the partial: this stream's decodes run one at a time
    await until(lambda: depth(metrics) == 2, "the final waiting its turn")
    assert engine.pending == 1
    engine.gate.set()
    caller.close()
    await asyncio.wait_for(caller.task, 5)
    assert depth(metrics) == 0
    finals = [r.transcript for r in caller.context.written if r.HasField("transcript") and r.transcript.final]
    assert [f.flush_id for f in finals] == ["t1"]


async def test_decodes_of_a_caller_who_hangs_up_leave_the_queue() -> None:
    engine = HeldEngine()
    servicer, metrics = make(engine)
    caller = Caller(servicer)
    caller.send(LOUD, 40, speech=True)
    caller.send(QUIET, 30, speech=False)
    caller.flush("t1")
    await until(lambda: depth(metrics) == 2, "a decode running and one waiting")
    caller.task.cancel()  # the edge went away mid-turn
    with pytest.raises(asyncio.CancelledError):
        await caller.task
    assert depth(metrics) == 0 and engine.pending == 0
    assert value(metrics, "voicemesh_sessions_total", outcome="cancelled") == 1


async def test_failed_decodes_leave_the_queue() -> None:
    engine = HeldEngine()
    engine.fail = True
    servicer, metrics = make(engine)
    caller = Caller(servicer)
    caller.send(LOUD, 40, speech=True)
    caller.send(QUIET, 30, speech=False)
    caller.flush("t1")
    await until(lambda: depth(metrics) == 2, "a decode running and one waiting")
    engine.gate.set()
    caller.close()
    await asyncio.wait_for(caller.task, 5)
    assert depth(metrics) == 0
    assert value(metrics, "voicemesh_errors_total", kind="decode") == 2


async def test_a_hole_in_the_edges_sequence_is_lost_then_concealed() -> None:
    engine = HeldEngine()
    engine.gate.set()
    servicer, metrics = make(engine)
    for name in ("voicemesh_media_frames_lost_total", "voicemesh_media_frames_concealed_total"):
        shown = metrics.registry.get_sample_value(name, {"service": "stt", "transport": "grpc"})
        assert shown == 0, name  # a zero on the dashboards before anything is lost
    caller = Caller(servicer)
    caller.send(QUIET, 10, speech=False)
    caller.sequence += 7  # seven frames never reach stt
    caller.send(QUIET, 10, speech=False)
    caller.close()
    await asyncio.wait_for(caller.task, 5)
    assert value(metrics, "voicemesh_media_frames_lost_total", transport="grpc") == 7
    assert value(metrics, "voicemesh_media_frames_concealed_total", transport="grpc") == 7
    assert value(metrics, "voicemesh_dropped_total", what="frame_lost_upstream") == 7  # as before
