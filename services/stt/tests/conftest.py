"""stt test fixtures: the real Whisper engine and Silero model (loaded once per session) and a
real grpc.aio server on a free port running `SttServicer`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voicemesh.audio import FRAME_BYTES, SileroModel, SileroVad, read_wav, split_frames
from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.stt import SegmenterConfig, SttServicer, WhisperEngine
from voicemesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@pytest.fixture(scope="session")
def engine() -> Iterator[WhisperEngine]:
    eng = WhisperEngine()
    eng.load()
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def silero() -> SileroModel:
    return SileroModel.load()


@pytest.fixture(scope="session")
def jfk_frames(jfk_wav: Path) -> list[bytes]:
    pcm, _ = read_wav(jfk_wav)
    return split_frames(pcm)


@dataclass
class Received:
    at: float
    response: stt_pb2.RecognizeResponse


@dataclass
class Conversation:
    """One Recognize call driven step by step, recording when each response arrived."""

    call: grpc.aio.StreamStreamCall
    received: list[Received] = field(default_factory=list)
    seq: int = 0

    @staticmethod
    def silence(ms: int) -> list[bytes]:
        return [bytes(FRAME_BYTES)] * (ms // 20)

    async def frames(self, frames: list[bytes], realtime: bool = False) -> None:
        """Send frames; `realtime` paces them at 20 ms like a live caller (no pacing: as fast
        as the stream takes them)."""
        start = time.perf_counter()
        for i, pcm in enumerate(frames):
            if realtime:
                ahead = start + i * 0.02 - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await self.call.write(
                stt_pb2.RecognizeRequest(
                    audio=audio_pb2.AudioFrame(sequence=self.seq, timestamp=self.seq * 320, pcm=pcm)
                )
            )
            self.seq += 1

    async def flush(self, flush_id: str) -> float:
        sent = time.perf_counter()
        await self.call.write(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id=flush_id)))
        return sent

    async def read_until(self, want: str = "final", timeout_s: float = 30.0) -> Received:
        """Read responses until a final transcript (or `want`="eof"); returns the last one."""

        async def loop() -> Received:
            while True:
                response = await self.call.read()
                if response is grpc.aio.EOF:
                    if want == "eof":
                        return self.received[-1] if self.received else Received(0.0, response)
                    raise AssertionError("stream ended before a final transcript")
                got = Received(time.perf_counter(), response)
                self.received.append(got)
                if want == "final" and response.HasField("transcript") and response.transcript.final:
                    return got

        return await asyncio.wait_for(loop(), timeout_s)

    def transcripts(self, final: bool | None = None) -> list[stt_pb2.Transcript]:
        out = [r.response.transcript for r in self.received if r.response.HasField("transcript")]
        return [t for t in out if final is None or t.final == final]

    def kinds(self) -> list[str]:
        names = []
        for r in self.received:
            if r.response.HasField("speech"):
                names.append(stt_pb2.SpeechEvent.Kind.Name(r.response.speech.kind))
            else:
                names.append("final" if r.response.transcript.final else "partial")
        return names


@dataclass
class SttHarness:
    stub: stt_pb2_grpc.SpeechToTextStub
    servicer: SttServicer
    metrics: ServiceMetrics
    events: RecordingEvents
    spans: InMemorySpanExporter

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"service": "stt", **labels})
        return value or 0.0

    @staticmethod
    def config(
        session_id: str = "call-1",
        *,
        endpointing: int = stt_pb2.ENDPOINTING_EXTERNAL,
        endpoint_silence_ms: int = 0,
        partials: bool = True,
        language: str = "en",
        sample_rate_hz: int = 16000,
        client_vad: bool = False,
    ) -> stt_pb2.RecognizeRequest:
        return stt_pb2.RecognizeRequest(
            config=stt_pb2.RecognitionConfig(
                session_id=session_id,
                format=audio_pb2.AudioFormat(
                    encoding=audio_pb2.AUDIO_ENCODING_PCM16,
                    sample_rate_hz=sample_rate_hz,
                    channels=1,
                    frame_ms=20,
                ),
                language=language,
                endpointing=endpointing,  # type: ignore[arg-type]
                endpoint_silence_ms=endpoint_silence_ms,
                partials=partials,
                client_vad=client_vad,
            )
        )

    async def open(self, config: stt_pb2.RecognizeRequest | None = None) -> Conversation:
        call = self.stub.Recognize()
        await call.write(config if config is not None else self.config())
        return Conversation(call)


async def start_stt(
    engine: WhisperEngine, silero: SileroModel, defaults: SegmenterConfig | None = None
) -> tuple[grpc.aio.Server, grpc.aio.Channel, SttHarness]:
    # A decode left running by an earlier test would make this one's engine look busy.
    deadline = time.monotonic() + 10.0
    while engine.pending:
        assert time.monotonic() < deadline, "the engine stayed busy"
        await asyncio.sleep(0.01)
    metrics = ServiceMetrics.create("stt")
    events = RecordingEvents(service="stt")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    servicer = SttServicer(
        engine,
        lambda: SileroVad(silero),
        metrics,
        events,
        provider.get_tracer("stt-test"),
        segmenter_defaults=defaults,
    )
    server = grpc.aio.server()
    stt_pb2_grpc.add_SpeechToTextServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    harness = SttHarness(stt_pb2_grpc.SpeechToTextStub(channel), servicer, metrics, events, spans)
    return server, channel, harness


@pytest.fixture
async def stt(engine: WhisperEngine, silero: SileroModel) -> AsyncIterator[SttHarness]:
    server, channel, harness = await start_stt(engine, silero)
    try:
        yield harness
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def stt_factory(
    engine: WhisperEngine, silero: SileroModel
) -> AsyncIterator[Callable[[SegmenterConfig | None], Awaitable[SttHarness]]]:
    """Starts further servers (e.g. with other segmenter defaults); stopped after the test."""
    started: list[tuple[grpc.aio.Server, grpc.aio.Channel]] = []

    async def start(defaults: SegmenterConfig | None = None) -> SttHarness:
        server, channel, harness = await start_stt(engine, silero, defaults)
        started.append((server, channel))
        return harness

    yield start
    for server, channel in started:
        await channel.close()
        await server.stop(None)
