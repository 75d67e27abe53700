from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
from opentelemetry import trace

from voicemesh.mesh.events import RecordingEvents
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.tts.engine import PiperEngine, SpeechEngine, Voice
from voicemesh.tts.servicer import TtsServicer
from voicemesh.v1 import audio_pb2, tts_pb2, tts_pb2_grpc


@pytest.fixture(scope="session")
def piper_engine() -> Iterator[PiperEngine]:
    engine = PiperEngine()
    engine.load()
    yield engine
    engine.close()


class ToneEngine(SpeechEngine):
    """A fake engine: every "|"-separated part of a text is a chunk of `chunk_ms` of a 440 Hz
    tone at 16 kHz (the chunker does not split at "|", so one clause can give several chunks).

    With `gated`, every chunk but the engine's very first waits for `release()`, so a test
    decides when the next chunk exists. Text containing "FAIL" raises."""

    def __init__(self, chunk_ms: int = 500, gated: bool = False) -> None:
        super().__init__("tone")
        self.chunk_ms = chunk_ms
        self.gated = gated
        self._gate = threading.Semaphore(0)
        self._chunks = 0
        self.texts: list[str] = []

    def voices(self) -> Mapping[str, Voice]:
        return {"tone": Voice("tone", 16000)}

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    def synthesize(self, text: str, voice_id: str = "") -> Iterator[bytes]:
        self.texts.append(text)
        if "FAIL" in text:
            raise RuntimeError("tone engine failure")
        n = 16000 * self.chunk_ms // 1000
        tone = (0.3 * 32767 * np.sin(2 * math.pi * 440 * np.arange(n) / 16000)).astype("<i2")
        for _ in text.split("|"):
            if self.gated and self._chunks > 0 and not self._gate.acquire(timeout=10):
                raise TimeoutError("tone engine gate never released")
            self._chunks += 1
            yield tone.tobytes()


@pytest.fixture
def tone_engine() -> Iterator[type[ToneEngine]]:
    yield ToneEngine


@dataclass
class Client:
    """Drives one Synthesize stream: queue requests, collect every response in order."""

    call: grpc.aio.StreamStreamCall
    requests: asyncio.Queue[tts_pb2.SynthesizeRequest | None]
    responses: list[tts_pb2.SynthesizeResponse] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    received_at: list[float] = field(default_factory=list)
    error: grpc.aio.AioRpcError | None = None
    done: bool = False
    task: asyncio.Task[None] | None = None

    async def collect(self) -> None:
        try:
            async for response in self.call:
                self.responses.append(response)
                self.received_at.append(time.monotonic())
                self.changed.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.done = True
            self.changed.set()

    def send(self, **kind: object) -> None:
        self.requests.put_nowait(tts_pb2.SynthesizeRequest(**kind))  # type: ignore[arg-type]

    def text(self, response_id: str, text: str) -> None:
        self.send(text=tts_pb2.TextDelta(response_id=response_id, text=text))

    def end(self, response_id: str) -> None:
        self.send(end=tts_pb2.EndOfText(response_id=response_id))

    def cancel(self, response_id: str = "") -> None:
        self.send(cancel=tts_pb2.CancelSynthesis(response_id=response_id))

    def close(self) -> None:
        self.requests.put_nowait(None)

    async def wait_for(
        self, condition: Callable[[], bool], within_s: float = 20.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + within_s
        while not condition():
            if self.done and not condition():
                raise AssertionError(f"stream ended ({self.error}) before {what}")
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                continue

    # --- views ---

    def frames(self, response_id: str | None = None) -> list[audio_pb2.AudioFrame]:
        return [
            r.audio.frame
            for r in self.responses
            if r.HasField("audio") and (response_id is None or r.audio.response_id == response_id)
        ]

    def marks(self, response_id: str | None = None) -> list[tts_pb2.SynthesisMark]:
        return [
            r.mark
            for r in self.responses
            if r.HasField("mark") and (response_id is None or r.mark.response_id == response_id)
        ]

    def ended(self, response_id: str) -> bool:
        return any(m.name == "end" for m in self.marks(response_id))

    def pcm(self, response_id: str | None = None) -> bytes:
        return b"".join(f.pcm for f in self.frames(response_id))


@dataclass
class Server:
    port: int
    events: RecordingEvents
    metrics: ServiceMetrics
    channel: grpc.aio.Channel
    clients: list[Client] = field(default_factory=list)

    def open(
        self,
        session_id: str = "call1",
        voice: str = "",
        sample_rate: int = 16000,
        fmt: audio_pb2.AudioFormat | None = None,
    ) -> Client:
        requests: asyncio.Queue[tts_pb2.SynthesizeRequest | None] = asyncio.Queue()

        async def feed() -> AsyncIterator[tts_pb2.SynthesizeRequest]:
            while (request := await requests.get()) is not None:
                yield request

        stub = tts_pb2_grpc.TextToSpeechStub(self.channel)
        client = Client(stub.Synthesize(feed()), requests)
        if fmt is None:
            fmt = audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_PCM16,
                sample_rate_hz=sample_rate,
                channels=1,
                frame_ms=20,
            )
        client.send(config=tts_pb2.SynthesisConfig(session_id=session_id, voice=voice, format=fmt))
        client.task = asyncio.create_task(client.collect())
        self.clients.append(client)
        return client


async def start_server(engine: SpeechEngine) -> tuple[grpc.aio.Server, Server]:
    events = RecordingEvents()
    metrics = ServiceMetrics.create("tts")
    server = grpc.aio.server()
    tts_pb2_grpc.add_TextToSpeechServicer_to_server(
        TtsServicer(engine, metrics, events, trace.NoOpTracer()), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, Server(port, events, metrics, channel)


async def stop_server(server: grpc.aio.Server, handle: Server) -> None:
    for client in handle.clients:
        client.close()  # ends the request iterator, so grpc's consumer task finishes
        client.call.cancel()
        if client.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await client.task
    await handle.channel.close()
    await server.stop(0)


@pytest.fixture
async def tts(piper_engine: PiperEngine) -> AsyncIterator[Server]:
    server, handle = await start_server(piper_engine)
    yield handle
    await stop_server(server, handle)
