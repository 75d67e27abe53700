"""Role clients against real gRPC servers on free ports (small recording servicers stand in
for stt: the tests are about the client's lanes and reopen, not about recognition)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from voicemesh.edge.channels import ChannelPool
from voicemesh.edge.roles import PCM16, SttClient
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import stt_pb2, stt_pb2_grpc

pytestmark = pytest.mark.integration
FRAME = bytes(640)


class RecordingStt(stt_pb2_grpc.SpeechToTextServicer):
    """Records every request; answers each Flush with a final named after this server."""

    def __init__(self, name: str, stall: asyncio.Event | None = None) -> None:
        self.name = name
        self.requests: list[stt_pb2.RecognizeRequest] = []
        self.stall = stall
        self.flushed = asyncio.Event()

    async def Recognize(
        self, request_iterator: AsyncIterator[stt_pb2.RecognizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[stt_pb2.RecognizeResponse]:
        async for request in request_iterator:
            if self.stall is not None and request.WhichOneof("kind") == "audio":
                await self.stall.wait()  # a peer that stops reading: frames pile up at the edge
            self.requests.append(request)
            if request.WhichOneof("kind") == "flush":
                self.flushed.set()
                yield stt_pb2.RecognizeResponse(
                    transcript=stt_pb2.Transcript(final=True, text=self.name, flush_id=request.flush.flush_id)
                )


class Servers:
    def __init__(self) -> None:
        self.running: list[grpc.aio.Server] = []

    async def start(self, name: str, stall: asyncio.Event | None = None) -> tuple[RecordingStt, str]:
        server = grpc.aio.server()
        servicer = RecordingStt(name, stall)
        stt_pb2_grpc.add_SpeechToTextServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.running.append(server)
        return servicer, f"127.0.0.1:{port}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    out = Servers()
    yield out
    for server in out.running:
        await server.stop(None)


def config() -> stt_pb2.RecognitionConfig:
    return stt_pb2.RecognitionConfig(session_id="s1", format=PCM16, language="en", client_vad=True)


async def first_final(client: SttClient) -> stt_pb2.Transcript:
    async for resp in client.responses():
        return resp.transcript
    raise AssertionError("no response")


async def test_a_reopened_role_is_configured_again_and_goes_on_from_the_new_instance(servers: Servers) -> None:
    _, addr_a = await servers.start("a")
    b, addr_b = await servers.start("b")
    pool = ChannelPool()
    client = SttClient.open(pool, ServiceMetrics.create("media-edge"), addr_a, [], config())
    try:
        reader = asyncio.create_task(first_final(client))
        for _ in range(3):
            client.send_frame(FRAME, 0.9)
        await client.reopen(addr_b)
        for _ in range(2):
            client.send_frame(FRAME, 0.1)
        client.flush("t1")
        final = await asyncio.wait_for(reader, 5)
        assert (final.text, final.flush_id) == ("b", "t1")
        kinds = [r.WhichOneof("kind") for r in b.requests]
        assert kinds == ["config", "audio", "audio", "flush"]
        assert b.requests[0].config.client_vad
        # numbering goes on across the reopen: frames still queued for the old instance are
        # gone with it, and the new one sees that as a gap of media time (which stt fills)
        assert [r.audio.sequence for r in b.requests[1:3]] == [3, 4]
        assert [r.audio.speech_probability for r in b.requests[1:3]] == pytest.approx([0.1, 0.1])
    finally:
        await client.aclose()
        await pool.close()


async def test_a_flush_behind_a_stalled_peer_is_never_dropped_and_stays_behind_its_frames(servers: Servers) -> None:
    stall = asyncio.Event()
    peer, address = await servers.start("p", stall)
    pool = ChannelPool()
    metrics = ServiceMetrics.create("media-edge")
    client = SttClient.open(pool, metrics, address, [], config())
    try:
        for _ in range(200):  # 4 s of audio while the peer reads nothing
            client.send_frame(FRAME, 0.0)
        client.flush("t1")
        for _ in range(10):
            client.send_frame(FRAME, 0.0)
        stall.set()
        dropped = metrics.dropped_total.labels("media-edge", "stt_frame")
        async with asyncio.timeout(5):  # until every frame is either delivered or dropped
            while len(peer.requests) - 2 + dropped._value.get() < 210:
                await asyncio.sleep(0.01)
        kinds = [r.WhichOneof("kind") for r in peer.requests]
        assert kinds[0] == "config" and kinds.count("flush") == 1
        sequences = [r.audio.sequence for r in peer.requests if r.WhichOneof("kind") == "audio"]
        assert sequences == sorted(sequences) and len(sequences) < 210  # the oldest frames went
        flush_at = kinds.index("flush")
        before = [r.audio.sequence for r in peer.requests[:flush_at] if r.WhichOneof("kind") == "audio"]
        assert before[-1] == 199  # every frame sent before the flush that was kept, precedes it
        assert dropped._value.get() == 210 - len(sequences) > 0
    finally:
        await client.aclose()
        await pool.close()
