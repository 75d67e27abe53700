"""The seam between call transports and the call: a transport-neutral media port.

Every transport (the native WebSocket, the Twilio Media Streams WebSocket; SIP/RTP and
WebRTC later) accepts calls and turns each into a `MediaPort`:

- **in**: gapless 20 ms frames of 16 kHz PCM16 (640 bytes), one per 20 ms of the caller's
  media time. A transport conceals loss (silence or its codec's PLC) and never skips, so the
  frame index *is* media time. Call events come in on the same stream, in order: DTMF,
  hold / resume, marks played, hangup.
- **out**: `play` one 20 ms frame (the call paces them in real time), `clear` what the far
  end buffered (barge-in), `mark` a point in the outgoing audio (answered by `MarkPlayed`
  once the caller has heard everything before it), and call actions: hang up, transfer,
  send DTMF.

What a native client or a browser is shown (states, transcripts, reply text, timings) is
not part of the port: a transport that wants it implements `CallObserver` as well.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from voicemesh.audio.frames import FRAME_BYTES

DTMF_DIGITS = frozenset("0123456789*#ABCD")


def check_digits(digits: str) -> str:
    """`digits` if every key is a DTMF key (0-9 * # A-D); ValueError naming the first that is not."""
    if not digits:
        raise ValueError("no DTMF digits")
    for ch in digits:
        if ch not in DTMF_DIGITS:
            raise ValueError(f"{ch!r} is not a DTMF key (0-9, *, #, A-D)")
    return digits


class EndReason(StrEnum):
    """Why a call ended (the `reason` of the CallEnded event and of the native `end`)."""

    CALLER = "caller"
    AGENT = "agent"
    TRANSFER = "transfer"
    UNAVAILABLE = "unavailable"
    NO_CAPACITY = "no_capacity"
    UNKNOWN_AGENT = "unknown_agent"
    NO_MEDIA = "no_media"  # the caller's side sent no audio for the media timeout
    ERROR_STT = "error:stt"
    ERROR_REASONING = "error:reasoning"
    ERROR_TTS = "error:tts"
    ERROR_INTERNAL = "error:internal"

    @property
    def failed(self) -> bool:
        """The call did not happen as the caller meant: a peer failed, the mesh could not
        take it (full, draining, its router or registry unreachable), or no media came."""
        return self.value.startswith("error") or self in (
            EndReason.UNAVAILABLE,
            EndReason.NO_CAPACITY,
            EndReason.UNKNOWN_AGENT,
            EndReason.NO_MEDIA,
        )


@dataclass(frozen=True)
class CallInfo:
    """What the transport knows about the call when it starts."""

    transport: str
    agent: str = ""
    caller: str = ""  # personal data: a number or address
    callee: str = ""
    carrier_call_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


# ---- events a port yields, in order --------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """20 ms of caller audio: exactly FRAME_BYTES of 16 kHz PCM16."""

    pcm: bytes

    def __post_init__(self) -> None:
        if len(self.pcm) != FRAME_BYTES:
            raise ValueError(f"a port frame must be {FRAME_BYTES} bytes, got {len(self.pcm)}")


@dataclass(frozen=True)
class Dtmf:
    digits: str


@dataclass(frozen=True)
class Hold:
    on: bool  # True: the caller put the call on hold; False: resumed


@dataclass(frozen=True)
class MarkPlayed:
    """The far end has played every frame sent before `mark(name)` (or cleared them)."""

    name: str


@dataclass(frozen=True)
class Hangup:
    reason: str


@dataclass(frozen=True)
class Transferred:
    method: str  # how the transport carried it out: "native", "twilio-connect-action", "sip-refer"
    result: str = ""  # what the far end reported, where it does (SIP: "accepted", "refused: 603 Decline")


@dataclass(frozen=True)
class MediaQuality:
    """How the caller's media reached us, and (from its reports, where the protocol has
    them: RTCP) how ours reached the caller."""

    packets_received: int
    packets_lost: int  # expected from sequence numbers, less received
    jitter_ms: float  # RFC 3550 interarrival jitter of what we received
    concealed_frames: int  # 20 ms frames made up for lost or missing audio
    rtt_ms: float | None = None
    remote_fraction_lost: float | None = None  # 0..1 of our packets, as the caller reported
    remote_jitter_ms: float | None = None


@dataclass(frozen=True)
class QualityReport:
    """A fresh MediaQuality (e.g. at each RTCP report from the caller)."""

    quality: MediaQuality


PortEvent = Frame | Dtmf | Hold | MarkPlayed | QualityReport | Hangup


class MediaPort(ABC):
    """One live call, as a transport carries it.

    The port also measures the caller's media as it arrives (jitter, frames lost, frames
    it conceals) in the `voicemesh_media_*` metrics, labelled with its `transport_label`."""

    info: CallInfo
    # The `transport` label of this transport's metrics: "native", "twilio" (later "sip", ...).
    transport_label: ClassVar[str]

    @abstractmethod
    async def receive(self) -> PortEvent:
        """The next caller frame or call event; `Hangup` once, when the caller is gone."""

    @abstractmethod
    async def play(self, pcm: bytes) -> None:
        """One 20 ms frame of agent audio (16 kHz PCM16), already paced by the call."""

    @abstractmethod
    async def mark(self, name: str) -> None:
        """Mark this point of the outgoing audio; `MarkPlayed(name)` follows once played."""

    @abstractmethod
    async def clear(self) -> None:
        """Barge-in: drop agent audio the far end has buffered but not yet played."""

    @abstractmethod
    async def transfer(self, target: str) -> Transferred:
        """Hand the call on to `target` (a number or SIP URI): how it was carried out and,
        where the far end says, how that went. The call ends after it."""

    @abstractmethod
    async def send_dtmf(self, digits: str) -> None:
        """Send keys to the far end."""

    @abstractmethod
    async def close(self, reason: EndReason, message: str = "") -> None:
        """End the call from our side (hang up), once; `message` explains a failure."""

    def observer(self) -> CallObserver | None:
        """What this transport's client wants to be shown, if anything."""
        return None

    def quality(self) -> MediaQuality | None:
        """The call's media quality so far, where the transport measures it (asked once
        more when the call ends)."""
        return None


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
    # Last voiced audio -> a filler's first frame sent, when one played before the reply (0: none).
    filler_ms: float = 0.0


class CallObserver(ABC):
    """What a rich client is shown of its call. Every method is best effort: a slow or gone
    client must not hold up the call."""

    @abstractmethod
    async def ready(self, session_id: str, agent: str) -> None: ...

    @abstractmethod
    async def state(self, state: str) -> None: ...

    @abstractmethod
    async def transcript(self, turn_id: str, text: str, final: bool) -> None: ...

    @abstractmethod
    async def response(self, response_id: str, turn_id: str, text: str, final: bool) -> None: ...

    @abstractmethod
    async def playout(self, response_id: str, name: str) -> None:
        """"start" before a response's first frame, "end" after its last (or when stopped)."""

    @abstractmethod
    async def filler(self, turn_id: str, text: str, name: str) -> None:
        """A filler for a late reply to `turn_id`: "start" before its first frame, "end" after
        its last (or when stopped). Its audio is no response's."""

    @abstractmethod
    async def timing(self, timing: TurnTiming) -> None: ...

    @abstractmethod
    async def error(self, code: str, message: str) -> None: ...


CallHandler = Callable[[MediaPort], Awaitable[None]]


class CallTransport(ABC):
    """Accepts calls of one kind and hands each, as a MediaPort, to the call handler."""

    name: str
    transport_label: ClassVar[str]  # the same as its ports'

    @abstractmethod
    async def start(self, handler: CallHandler) -> None:
        """Start listening; every accepted call runs `handler(port)`."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop accepting calls (live calls go on)."""

    @abstractmethod
    def describe(self) -> str:
        """Where callers reach it, e.g. ws://127.0.0.1:8080/v1/call."""
