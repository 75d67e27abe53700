"""Fake, cheap stand-ins for the media-edge's peers, for bench/edge_media.py.

One process serving, with grpc.aio, each on its own free port (as separate hosts would be):

- SessionRouter: `Assign` names this process's fake stt, reasoning and tts; `Release` is ok.
- SpeechToText: reads the config, then audio frames; answers each `Flush` with one final
  transcript ("a table for four") echoing its `flush_id`. No partials, no decoding.
- Reasoning: answers `start` with `ready` (endpoint silence 500 ms, barge-in allowed, default
  voice, "en"), then a greeting; every `turn` or `dtmf` gets "Sure." (one delta, then end).
- TextToSpeech: for each response's `end`, 25 frames (0.5 s) of a quiet tone as 16 kHz
  PCM16, then the "end" mark. No synthesis.

There are no models here: the benchmark measures the edge, not stt, reasoning or tts. Each
servicer subclasses the generated interface, so the edge talks to it as to the real thing,
over the mesh's mTLS when `--tls-root` names a `certs.write_mesh_tls` directory (each fake
holds its service's certificate and checks its callers as the real one does).

    .venv/bin/python bench/fakepeers.py --port-file /tmp/peers.json [--tls-root DIR]

writes {"router": "127.0.0.1:PORT", "stt": ..., "reasoning": ..., "tts": ...} once every
server listens, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from voicemesh.audio.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from voicemesh.mesh.grpcutil import SERVER_OPTIONS
from voicemesh.mesh.mtls import Authorizer, MeshTls
from voicemesh.v1 import (
    audio_pb2,
    reasoning_pb2,
    reasoning_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

ROLES = ("stt", "reasoning", "tts")
TRANSCRIPT = "a table for four"
REPLY = "Sure."
GREETING = "Hello."
REPLY_FRAMES = 25  # 0.5 s of audio per response
TONE_HZ = 440.0
TONE_AMPLITUDE = 1000  # about -30 dBFS: quiet
GRACE_S = 1.0


def tone_frames(count: int) -> list[bytes]:
    """`count` consecutive 20 ms frames of a continuous sine (16 kHz PCM16 LE)."""
    frames = []
    for f in range(count):
        samples = (
            round(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * (f * FRAME_SAMPLES + i) / SAMPLE_RATE))
            for i in range(FRAME_SAMPLES)
        )
        frames.append(struct.pack(f"<{FRAME_SAMPLES}h", *samples))
    return frames


class FakeRouter(router_pb2_grpc.SessionRouterServicer):
    def __init__(self, addresses: dict[str, str]) -> None:
        self._addresses = addresses

    async def Assign(
        self, request: router_pb2.AssignRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.AssignResponse:
        unknown = [s for s in request.services if s not in self._addresses]
        if unknown:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"no fake for: {', '.join(unknown)}")
        return router_pb2.AssignResponse(
            assignments=[
                router_pb2.Assignment(
                    service=s, instance_id=f"fake-{s}", address=self._addresses[s], region=request.region
                )
                for s in request.services
            ]
        )

    async def Release(
        self, request: router_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ReleaseResponse:
        return router_pb2.ReleaseResponse(released=len(ROLES))


class FakeStt(stt_pb2_grpc.SpeechToTextServicer):
    async def Recognize(
        self, request_iterator: AsyncIterator[stt_pb2.RecognizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[stt_pb2.RecognizeResponse]:
        frames = 0
        async for req in request_iterator:
            kind = req.WhichOneof("kind")
            if kind == "audio":
                frames += 1
            elif kind == "flush":
                yield stt_pb2.RecognizeResponse(
                    transcript=stt_pb2.Transcript(
                        utterance_id=req.flush.flush_id,
                        text=TRANSCRIPT,
                        final=True,
                        stability=1.0,
                        confidence=0.9,
                        audio_end_ms=frames * FRAME_MS,
                        flush_id=req.flush.flush_id,
                    )
                )


class FakeReasoning(reasoning_pb2_grpc.ReasoningServicer):
    async def Converse(
        self,
        request_iterator: AsyncIterator[reasoning_pb2.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[reasoning_pb2.ConverseResponse]:
        responses = 0

        def reply(in_reply_to: str, text: str) -> list[reasoning_pb2.ConverseResponse]:
            nonlocal responses
            responses += 1
            rid = f"r{responses}"
            return [
                reasoning_pb2.ConverseResponse(
                    delta=reasoning_pb2.ResponseDelta(response_id=rid, in_reply_to=in_reply_to, text=text)
                ),
                reasoning_pb2.ConverseResponse(
                    end=reasoning_pb2.ResponseEnd(response_id=rid, text=text, in_reply_to=in_reply_to)
                ),
            ]

        started = False
        async for req in request_iterator:
            kind = req.WhichOneof("kind")
            if kind == "start" and not started:
                started = True
                yield reasoning_pb2.ConverseResponse(
                    ready=reasoning_pb2.SessionReady(
                        agent=reasoning_pb2.AgentProfile(
                            name="bench",
                            voice="",
                            language="en",
                            endpoint_silence_ms=500,
                            allow_barge_in=True,
                        )
                    )
                )
                for msg in reply("", GREETING):
                    yield msg
            elif kind == "turn":
                for msg in reply(req.turn.turn_id, REPLY):
                    yield msg
            elif kind == "dtmf":
                for msg in reply(req.dtmf.turn_id, REPLY):
                    yield msg
            # cancel: the reply is already complete; nothing to stop


class FakeTts(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(self) -> None:
        self._tone = tone_frames(REPLY_FRAMES)

    async def Synthesize(
        self, request_iterator: AsyncIterator[tts_pb2.SynthesizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        sequence = 0
        async for req in request_iterator:
            if req.WhichOneof("kind") != "end":
                continue  # config, text deltas, cancels: nothing to synthesize
            rid = req.end.response_id
            for pcm in self._tone:
                yield tts_pb2.SynthesizeResponse(
                    audio=tts_pb2.SynthesizedAudio(
                        response_id=rid,
                        frame=audio_pb2.AudioFrame(
                            sequence=sequence, timestamp=sequence * FRAME_SAMPLES, pcm=pcm
                        ),
                    )
                )
                sequence += 1
            yield tts_pb2.SynthesizeResponse(
                mark=tts_pb2.SynthesisMark(
                    response_id=rid, name="end", audio_offset_ms=REPLY_FRAMES * FRAME_MS
                )
            )


# The identity (certificate) each fake holds.
IDENTITY = {"router": "session-router", "stt": "stt", "reasoning": "reasoning", "tts": "tts"}


async def _listen(host: str, tls: MeshTls | None) -> tuple[grpc.aio.Server, str]:
    if tls is None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        port = server.add_insecure_port(f"{host}:0")
    else:
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[Authorizer(lambda _i, _m: None)])
        port = server.add_secure_port(f"{host}:0", tls.server_credentials())
    return server, f"{host}:{port}"


async def serve(host: str, port_file: Path, tls_root: Path | None) -> None:
    servers: dict[str, tuple[grpc.aio.Server, str]] = {}
    now = dt.datetime.now(dt.UTC)
    for name in ("router", *ROLES):
        tls = MeshTls.load(tls_root / IDENTITY[name], now) if tls_root else None
        servers[name] = await _listen(host, tls)
    addresses = {name: addr for name, (_, addr) in servers.items()}
    router_pb2_grpc.add_SessionRouterServicer_to_server(
        FakeRouter({r: addresses[r] for r in ROLES}), servers["router"][0]
    )
    stt_pb2_grpc.add_SpeechToTextServicer_to_server(FakeStt(), servers["stt"][0])
    reasoning_pb2_grpc.add_ReasoningServicer_to_server(FakeReasoning(), servers["reasoning"][0])
    tts_pb2_grpc.add_TextToSpeechServicer_to_server(FakeTts(), servers["tts"][0])
    for server, _ in servers.values():
        await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tmp = port_file.with_suffix(port_file.suffix + ".tmp")
    tmp.write_text(json.dumps({**addresses, "pid": os.getpid()}))
    tmp.replace(port_file)  # readers never see half a file
    try:
        await stop.wait()
    finally:
        await asyncio.gather(*(server.stop(GRACE_S) for server, _ in servers.values()))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port-file", type=Path, required=True, help="write the addresses here (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--tls-root", type=Path, help="serve mTLS with the certificates under DIR/<identity>/"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port_file, args.tls_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
