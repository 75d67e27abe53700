"""Role clients: the call's stt, reasoning and tts peers behind typed methods.

Each fronts one gRPC bidi stream (`Duplex`): control goes ahead of audio and is never
dropped; live caller audio may be dropped oldest-first (and counted) when a peer stalls; a
Flush stays in order behind the frames it finalizes. Each can be `reopen`ed against another
instance mid-call: it opens a new stream, sends the same configuration, and `responses()`
goes on from the new stream (failover builds on this).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import grpc

from voicemesh.audio.frames import FRAME_SAMPLES, SAMPLE_RATE
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.registry import PLACED_ROLES
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
from .decisions import CallAction, HangupCall, SendDigits, TransferCall
from .duplex import Duplex

PCM16 = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM16, sample_rate_hz=SAMPLE_RATE, channels=1, frame_ms=20
)
STT_MAX_QUEUED_FRAMES = 50  # 1 s of live audio; older frames are dropped (and counted) first
READY_TIMEOUT_S = 10.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# The roles a call asks the router for (stt, reasoning, tts).
ASKED_ROLES = PLACED_ROLES


class RoleFailed(Exception):
    """A role's peer refused or failed the stream; `code` and the message go to the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _RoleClient(Generic[Req, Resp]):
    role: str

    max_queued = 250

    def __init__(
        self, pool: ChannelPool, metrics: ServiceMetrics, address: str, metadata: list[tuple[str, str]], first: Req
    ) -> None:
        """`first`: the stream's opening message (its config), sent again on every reopen."""
        self._pool = pool
        self._metrics = metrics
        self._metadata = metadata
        self._first = first
        self.address = address
        self.generation = 0
        self._closed = False
        self._stream = self._open(address)
        self._configure()

    def _call(self, channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
        raise NotImplementedError

    def _open(self, address: str) -> Duplex[Req, Resp]:
        call = self._call(self._pool.acquire(address, self.role))
        return Duplex[Req, Resp](call, self.role, self._metrics, max_queued=self.max_queued)

    async def reopen(self, address: str) -> None:
        """Move this role to another instance: a new stream, configured like the old one."""
        old, old_address = self._stream, self.address
        self.address = address
        self._stream = self._open(address)
        self.generation += 1
        self._configure()
        await old.aclose()
        await self._pool.release(old_address)

    def _configure(self) -> None:
        self._stream.send_control(self._first)

    async def responses(self) -> AsyncIterator[Resp]:
        """Every response, across reopens, until the current stream ends."""
        while True:
            generation = self.generation
            stream = self._stream
            try:
                async for resp in stream.responses():
                    yield resp
            except grpc.aio.AioRpcError:
                if self.generation == generation:
                    raise  # a failure of the current stream, not of one we left
            if self.generation == generation:
                return  # the peer ended the stream (not a reopen)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stream.aclose()
        await self._pool.release(self.address)


class SttClient(_RoleClient[stt_pb2.RecognizeRequest, stt_pb2.RecognizeResponse]):
    role = "stt"
    max_queued = STT_MAX_QUEUED_FRAMES
    _sequence = 0

    @classmethod
    def open(
        cls, pool: ChannelPool, metrics: ServiceMetrics, address: str, metadata: list[tuple[str, str]],
        config: stt_pb2.RecognitionConfig,
    ) -> SttClient:
        return cls(pool, metrics, address, metadata, stt_pb2.RecognizeRequest(config=config))

    def _call(self, channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
        return stt_pb2_grpc.SpeechToTextStub(channel).Recognize(metadata=self._metadata)

    def send_frame(self, pcm: bytes, speech_probability: float) -> None:
        """One caller frame, numbered so stt sees any gap; dropped first when stt stalls."""
        seq = self._sequence
        self._sequence = seq + 1
        self._stream.send_live(
            stt_pb2.RecognizeRequest(
                audio=audio_pb2.AudioFrame(
                    sequence=seq,
                    timestamp=seq * FRAME_SAMPLES,
                    pcm=pcm,
                    speech_probability=speech_probability,
                )
            )
        )

    def flush(self, flush_id: str) -> None:
        """Ask for the final of the audio sent so far: in order, never dropped."""
        self._stream.send_ordered(stt_pb2.RecognizeRequest(flush=stt_pb2.Flush(flush_id=flush_id)))


class ReasoningClient(_RoleClient[reasoning_pb2.ConverseRequest, reasoning_pb2.ConverseResponse]):
    role = "reasoning"

    @classmethod
    def open(
        cls, pool: ChannelPool, metrics: ServiceMetrics, address: str, metadata: list[tuple[str, str]],
        start: reasoning_pb2.SessionStart,
    ) -> ReasoningClient:
        return cls(pool, metrics, address, metadata, reasoning_pb2.ConverseRequest(start=start))

    def _call(self, channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
        return reasoning_pb2_grpc.ReasoningStub(channel).Converse(metadata=self._metadata)

    async def ready(self) -> reasoning_pb2.AgentProfile:
        """Wait for the session to start; the agent profile it names."""
        try:
            first = await self._stream.read(READY_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            code = "unknown_agent" if exc.code() == grpc.StatusCode.NOT_FOUND else "reasoning_failed"
            raise RoleFailed(code, exc.details() or exc.code().name) from None
        except (TimeoutError, EOFError):
            raise RoleFailed("reasoning_failed", "the reasoning service did not start the session") from None
        if first.WhichOneof("kind") != "ready":
            raise RoleFailed("reasoning_failed", "the reasoning service did not answer with ready")
        return first.ready.agent

    def turn(self, turn_id: str, text: str, confidence: float) -> None:
        self._stream.send_ordered(
            reasoning_pb2.ConverseRequest(
                turn=reasoning_pb2.UserTurn(turn_id=turn_id, text=text, confidence=confidence)
            )
        )

    def dtmf(self, turn_id: str, digits: str) -> None:
        self._stream.send_ordered(
            reasoning_pb2.ConverseRequest(dtmf=reasoning_pb2.CallerDtmf(digits=digits, turn_id=turn_id))
        )

    def cancel(self, response_id: str, heard_text: str, turn_id: str = "") -> None:
        """Stop a response, named by its id or (before any word of it) by its turn."""
        self._stream.send_control(
            reasoning_pb2.ConverseRequest(
                cancel=reasoning_pb2.CancelResponse(
                    response_id=response_id, heard_text=heard_text, turn_id=turn_id
                )
            )
        )


class TtsClient(_RoleClient[tts_pb2.SynthesizeRequest, tts_pb2.SynthesizeResponse]):
    role = "tts"

    @classmethod
    def open(
        cls, pool: ChannelPool, metrics: ServiceMetrics, address: str, metadata: list[tuple[str, str]],
        config: tts_pb2.SynthesisConfig,
    ) -> TtsClient:
        return cls(pool, metrics, address, metadata, tts_pb2.SynthesizeRequest(config=config))

    def _call(self, channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
        return tts_pb2_grpc.TextToSpeechStub(channel).Synthesize(metadata=self._metadata)

    def text(self, response_id: str, text: str) -> None:
        self._stream.send_ordered(
            tts_pb2.SynthesizeRequest(text=tts_pb2.TextDelta(response_id=response_id, text=text))
        )

    def end(self, response_id: str) -> None:
        self._stream.send_ordered(tts_pb2.SynthesizeRequest(end=tts_pb2.EndOfText(response_id=response_id)))

    def cancel(self, response_id: str) -> None:
        self._stream.send_control(
            tts_pb2.SynthesizeRequest(cancel=tts_pb2.CancelSynthesis(response_id=response_id))
        )


def to_action(action: reasoning_pb2.Action) -> CallAction | None:
    kind = action.WhichOneof("kind")
    if kind == "hangup":
        return HangupCall(action.hangup.reason)
    if kind == "transfer":
        return TransferCall(action.transfer.target)
    if kind == "dtmf":
        return SendDigits(action.dtmf.digits)
    return None


ASSIGN_TIMEOUT_S = 2.0


def router_failure(code: grpc.StatusCode, details: str) -> RoleFailed:
    """What the caller is told when the router does not place the call: `no_capacity` only
    when the router says no instance has room (RESOURCE_EXHAUSTED); anything else
    (the registry unreachable, the router down or silent) is `unavailable` with the reason."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RoleFailed("no_capacity", f"no instance can take the call: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RoleFailed("unavailable", f"the session router did not answer in {ASSIGN_TIMEOUT_S:g} s")
    if code == grpc.StatusCode.UNAVAILABLE:
        return RoleFailed(
            "unavailable", f"the session router cannot place the call: {details or 'unreachable'}"
        )
    return RoleFailed("unavailable", f"the session router failed the call ({code.name}): {details}")


async def assign(
    router: Any, session_id: str, region: str, metadata: list[tuple[str, str]]
) -> dict[str, str]:
    """service -> address of the instances the router reserved for this call. Raises
    RoleFailed (`router_failure`) when it reserved none."""
    try:
        resp = await router.Assign(
            router_pb2.AssignRequest(session_id=session_id, region=region, services=list(ASKED_ROLES)),
            timeout=ASSIGN_TIMEOUT_S,
            metadata=metadata,
        )
    except grpc.aio.AioRpcError as exc:
        raise router_failure(exc.code(), exc.details() or "") from None
    return {a.service: a.address for a in resp.assignments}
