"""A call's three peer streams (stt, reasoning, tts): assignment by the router, opening,
the reasoning session handshake, and the agent profile it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from voicemesh.audio.frames import SAMPLE_RATE
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import (
    audio_pb2,
    reasoning_pb2,
    reasoning_pb2_grpc,
    router_pb2,
    stt_pb2,
    stt_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

from .channels import ChannelPool
from .duplex import Duplex
from .transport import CallRequest

PCM16 = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=SAMPLE_RATE, channels=1, frame_ms=20
)
READY_TIMEOUT_S = 10.0
SERVICES = ("stt", "reasoning", "tts")


class CallFailed(Exception):
    """The call cannot go on; `code` and the message go to the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Peers:
    stt: Duplex[stt_pb2.RecognizeRequest, stt_pb2.RecognizeResponse]
    reasoning: Duplex[reasoning_pb2.ConverseRequest, reasoning_pb2.ConverseResponse]
    tts: Duplex[tts_pb2.SynthesizeRequest, tts_pb2.SynthesizeResponse]
    profile: reasoning_pb2.AgentProfile

    async def aclose(self) -> None:
        for stream in (self.stt, self.reasoning, self.tts):
            await stream.aclose()


async def assign(
    router: Any, session_id: str, region: str, metadata: list[tuple[str, str]]
) -> dict[str, str]:
    """service -> address of the instances the router reserved for this call."""
    try:
        resp = await router.Assign(
            router_pb2.AssignRequest(session_id=session_id, region=region, services=list(SERVICES)),
            timeout=2.0,
            metadata=metadata,
        )
    except grpc.aio.AioRpcError as exc:
        raise CallFailed("no_capacity", f"no instance can take the call: {exc.details()}") from None
    return {a.service: a.address for a in resp.assignments}


async def open_peers(
    pool: ChannelPool,
    metrics: ServiceMetrics,
    addresses: dict[str, str],
    metadata: list[tuple[str, str]],
    session_id: str,
    request: CallRequest,
) -> Peers:
    """Start the reasoning session (which names the agent's voice, language and turn
    settings), then open stt and tts configured for it."""
    reasoning = Duplex[reasoning_pb2.ConverseRequest, reasoning_pb2.ConverseResponse](
        reasoning_pb2_grpc.ReasoningStub(pool.get(addresses["reasoning"])).Converse(metadata=metadata),
        "reasoning",
        metrics,
    )
    reasoning.send_control(
        reasoning_pb2.ConverseRequest(
            start=reasoning_pb2.SessionStart(
                session_id=session_id, agent=request.agent, metadata=request.metadata
            )
        )
    )
    try:
        first = await reasoning.read(READY_TIMEOUT_S)
        if first.WhichOneof("kind") != "ready":
            raise CallFailed("reasoning_failed", "the reasoning service did not answer with ready")
    except grpc.aio.AioRpcError as exc:
        await reasoning.aclose()
        code = "unknown_agent" if exc.code() == grpc.StatusCode.NOT_FOUND else "reasoning_failed"
        raise CallFailed(code, exc.details() or exc.code().name) from None
    except (TimeoutError, EOFError, CallFailed):
        await reasoning.aclose()
        raise CallFailed("reasoning_failed", "the reasoning service did not start the session") from None
    profile = first.ready.agent
    stt = Duplex[stt_pb2.RecognizeRequest, stt_pb2.RecognizeResponse](
        stt_pb2_grpc.SpeechToTextStub(pool.get(addresses["stt"])).Recognize(metadata=metadata),
        "stt",
        metrics,
        max_queued=50,  # 1 s of live audio; older frames are dropped (and counted) first
    )
    stt.send_live(
        stt_pb2.RecognizeRequest(
            config=stt_pb2.RecognitionConfig(
                session_id=session_id,
                format=PCM16,
                language=profile.language or "en",
                endpointing=stt_pb2.ENDPOINTING_EXTERNAL,
                # the edge ends turns; stt times its pause decodes to be ready by then
                endpoint_silence_ms=profile.endpoint_silence_ms,
                partials=True,
            )
        )
    )
    tts = Duplex[tts_pb2.SynthesizeRequest, tts_pb2.SynthesizeResponse](
        tts_pb2_grpc.TextToSpeechStub(pool.get(addresses["tts"])).Synthesize(metadata=metadata),
        "tts",
        metrics,
    )
    tts.send_control(
        tts_pb2.SynthesizeRequest(
            config=tts_pb2.SynthesisConfig(session_id=session_id, voice=profile.voice, format=PCM16)
        )
    )
    return Peers(stt, reasoning, tts, profile)
