"""The seam between call transports and the per-call pipeline.

A transport (native WebSocket today; Twilio-style WebSocket, WebRTC and SIP/RTP later)
accepts calls and turns each into a `CallChannel`: 16 kHz PCM16 20 ms frames in, the same
out, plus the few call events a caller can be told about. The pipeline (`CallSession`)
never knows which transport serves it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallRequest:
    """What the caller asked for when the call started."""

    transport: str
    agent: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InboundFrame:
    """One 20 ms frame of caller audio (640 bytes of 16 kHz PCM16)."""

    index: int
    pcm: bytes


@dataclass(frozen=True)
class Hangup:
    reason: str


Inbound = InboundFrame | Hangup


class CallChannel(ABC):
    """One live call, as the pipeline sees it."""

    @abstractmethod
    async def receive(self) -> Inbound:
        """The next caller frame, or Hangup when the caller is gone."""

    @abstractmethod
    async def send_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of agent audio (16 kHz PCM16), already paced by the caller."""

    @abstractmethod
    async def send_ready(self, session_id: str, agent: str) -> None: ...

    @abstractmethod
    async def send_state(self, state: str) -> None: ...

    @abstractmethod
    async def send_transcript(self, turn_id: str, text: str, final: bool) -> None: ...

    @abstractmethod
    async def send_response(self, response_id: str, turn_id: str, text: str, final: bool) -> None: ...

    @abstractmethod
    async def send_mark(self, response_id: str, name: str) -> None:
        """Playout marks: "start" before a response's first frame, "end" after its last."""

    @abstractmethod
    async def send_timing(self, timing: TurnTiming) -> None: ...

    @abstractmethod
    async def clear(self) -> None:
        """Barge-in: drop agent audio the far end has buffered but not played."""

    @abstractmethod
    async def send_error(self, code: str, message: str) -> None: ...

    @abstractmethod
    async def close(self, reason: str) -> None: ...


@dataclass(frozen=True)
class TurnTiming:
    turn_id: str
    # Index of the caller frame that held the last voiced audio.
    last_voiced_frame: int
    endpoint_ms: float
    stt_final_ms: float
    first_token_ms: float
    tts_first_audio_ms: float
    edge_voice_to_voice_ms: float


CallHandler = Callable[[CallChannel, CallRequest], Awaitable[None]]


class CallTransport(ABC):
    """Accepts calls of one kind and hands each to the pipeline."""

    name: str

    @abstractmethod
    async def start(self, handler: CallHandler) -> None:
        """Start listening; every accepted call runs `handler(channel, request)`."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop accepting calls (live calls go on)."""

    @abstractmethod
    def describe(self) -> str:
        """Where callers reach it, e.g. ws://127.0.0.1:8080/v1/call."""
