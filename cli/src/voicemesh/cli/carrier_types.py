"""What the simulated Twilio carrier (carrier.py) reads from the server and reports: the
server's messages, the stream's ids, audio conversion and the call's result. Pure."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from voicemesh.audio.g711 import ulaw_decode, ulaw_encode
from voicemesh.audio.resample import resample

from .callscript import SAMPLE_RATE

ULAW_RATE = 8000
BYTES_PER_S = ULAW_RATE  # μ-law: one byte a sample
FRAME_ULAW = 160  # 20 ms at 8 kHz
ULAW_SILENCE = 0xFF
QUIET_S = 0.5  # no media this long (and the buffer empty, a mark back): the reply is over
MAX_BUFFER_BYTES = 300 * BYTES_PER_S  # playback buffer bound: 5 minutes; beyond, media is dropped
DTMF_DIGITS = frozenset("0123456789*#")
DEFAULT_FROM = "+12025550101"  # fictional numbers (555-01xx)
DEFAULT_TO = "+12025550102"
_EPS = 1e-6  # float slack when comparing tick-clock times
_CLEAN_CLOSE = frozenset({1000, 1001})



class Phase(StrEnum):
    CONNECTING = "connecting"  # before the first tick
    GREETING = "greeting"
    SPEAKING = "speaking"
    AWAITING_REPLY = "awaiting_reply"
    LINGERING = "lingering"  # every utterance done: a moment before hanging up
    DRAINING = "draining"  # the server closed: what is buffered still plays
    DONE = "done"


class EndedBy(StrEnum):
    CARRIER = "carrier"  # the caller hung up: the carrier sent `stop`
    SERVER = "server"  # the server closed the WebSocket (agent hangup, transfer, failure)


class TurnOutcome(StrEnum):
    ANSWERED = "answered"  # the reply played out
    BARGED_IN = "barged_in"  # the next utterance started over the reply, as scripted
    TIMED_OUT = "timed_out"  # no reply played out within turn_timeout_s
    CUT_OFF = "cut_off"  # the server ended the call before a reply played
    NOT_SPOKEN = "not_spoken"  # the call ended before this utterance began


# -- the wire: what the server sends ------------------------------------------------------


@dataclass(frozen=True)
class ServerMedia:
    stream_sid: str
    payload: bytes  # μ-law 8 kHz


@dataclass(frozen=True)
class ServerMark:
    stream_sid: str
    name: str


@dataclass(frozen=True)
class ServerClear:
    stream_sid: str


ServerMessage = ServerMedia | ServerMark | ServerClear


def parse_server_message(raw: str | bytes) -> ServerMessage:
    """One WebSocket message from the server; ValueError names what is wrong with it."""
    if isinstance(raw, bytes):
        raise ValueError("binary message (Twilio takes JSON text frames)")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    event = doc.get("event")
    sid = doc.get("streamSid")
    if event not in ("media", "mark", "clear"):
        raise ValueError(f"event {event!r} is not one a server sends (media, mark, clear)")
    if not isinstance(sid, str) or not sid:
        raise ValueError(f"{event} without streamSid")
    if event == "clear":
        return ServerClear(sid)
    body = doc.get(event)
    if not isinstance(body, dict):
        raise ValueError(f"{event} without a {event!r} object")
    if event == "mark":
        name = body.get("name")
        if not isinstance(name, str):
            raise ValueError("mark without a string mark.name")
        return ServerMark(sid, name)
    payload = body.get("payload")
    if not isinstance(payload, str):
        raise ValueError("media without a string media.payload")
    try:
        return ServerMedia(sid, base64.b64decode(payload, validate=True))
    except binascii.Error:
        raise ValueError("media.payload is not valid base64") from None


# -- the call's identity ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSids:
    stream_sid: str
    call_sid: str
    account_sid: str

    @classmethod
    def new(cls) -> StreamSids:
        return cls("MZ" + secrets.token_hex(16), "CA" + secrets.token_hex(16), "AC" + secrets.token_hex(16))


# -- audio ---------------------------------------------------------------------------------


def caller_frames(pcm16k: bytes) -> list[bytes]:
    """PCM16 LE mono 16 kHz -> 160-byte μ-law 8 kHz frames, the last padded with silence."""
    narrow = resample(np.frombuffer(pcm16k, dtype="<i2"), SAMPLE_RATE, ULAW_RATE)
    ulaw = ulaw_encode(narrow.astype("<i2").tobytes())
    n = max(1, -(-len(ulaw) // FRAME_ULAW))
    ulaw += bytes([ULAW_SILENCE]) * (n * FRAME_ULAW - len(ulaw))
    return [ulaw[i * FRAME_ULAW : (i + 1) * FRAME_ULAW] for i in range(n)]


def ulaw_to_pcm16k(ulaw: bytes) -> bytes:
    """μ-law 8 kHz -> PCM16 LE mono 16 kHz (what a test transcribes)."""
    if not ulaw:
        return b""
    narrow = np.frombuffer(ulaw_decode(ulaw), dtype="<i2")
    return resample(narrow, ULAW_RATE, SAMPLE_RATE).astype("<i2").tobytes()


@dataclass(frozen=True)
class PlayedChunk:
    """μ-law bytes that played to the caller from `at` (8 bytes a millisecond)."""

    at: float
    ulaw: bytes
    reply: int  # 0: before any utterance (the greeting); i + 1: the reply to utterance i

    @property
    def end(self) -> float:
        return self.at + len(self.ulaw) / BYTES_PER_S


@dataclass(frozen=True)
class MarkEcho:
    """A mark the server sent and the carrier returned."""

    name: str
    received_at: float
    returned_at: float
    cleared: bool  # returned by a `clear`, not because its audio played


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResponse:
    """What the `<Connect action>` URL answered (TwiML, for Twilio to run next)."""

    status: int
    body: str
    content_type: str = ""

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "content_type": self.content_type, "body": self.body}


@dataclass(frozen=True)
class CarrierTurn:
    """One utterance and what the caller heard after it; times on the carrier's clock."""

    wav: str
    outcome: TurnOutcome
    started_at: float | None  # its first frame was sent
    last_loud_sent_at: float | None  # its last loud frame was sent
    reply_started_at: float | None  # the first reply audio after it began to play
    reply_pcm: bytes  # what played in reply, PCM16 LE mono 16 kHz
    marks: int = 0  # marks returned while this turn was current
    clears: int = 0
    dtmf: str = ""  # digits sent after it

    @property
    def voice_to_voice_ms(self) -> float | None:
        if self.reply_started_at is None or self.last_loud_sent_at is None:
            return None
        return (self.reply_started_at - self.last_loud_sent_at) * 1000.0

    @property
    def reply_audio_seconds(self) -> float:
        return len(self.reply_pcm) / (2 * SAMPLE_RATE)

    def to_json(self) -> dict[str, object]:
        v2v = self.voice_to_voice_ms
        return {
            "wav": self.wav,
            "outcome": str(self.outcome),
            "reply_audio_seconds": round(self.reply_audio_seconds, 3),
            "voice_to_voice_ms": None if v2v is None else round(v2v, 1),
            "marks": self.marks,
            "clears": self.clears,
            "dtmf": self.dtmf,
        }


@dataclass
class TwilioCallResult:
    """What happened on one carrier call. Times are on the carrier's (monotonic) clock."""

    sids: StreamSids
    started_at: float
    turns: list[CarrierTurn]
    greeting_pcm: bytes  # what played before the first utterance, PCM16 16 kHz
    played: list[PlayedChunk]
    media_sent: int
    media_received: int
    marks: list[MarkEcho]
    clears: list[float]  # when each `clear` arrived
    ended_by: EndedBy
    ended_at: float
    close_code: int | None = None  # when the server closed
    close_reason: str = ""
    marks_unreturned: int = 0  # pending when the stream ended
    dropped_bytes: int = 0  # media beyond the playback buffer's bound
    problems: dict[str, int] = field(default_factory=dict)  # protocol violations by the server
    action: ActionResponse | None = None
    action_error: str = ""

    @property
    def reply_pcm(self) -> bytes:
        return b"".join(t.reply_pcm for t in self.turns)

    @property
    def reply_audio_seconds(self) -> float:
        return len(self.reply_pcm) / (2 * SAMPLE_RATE)

    @property
    def unanswered(self) -> list[str]:
        return [t.wav for t in self.turns if t.outcome in (TurnOutcome.NOT_SPOKEN, TurnOutcome.CUT_OFF)]

    @property
    def ok(self) -> bool:
        clean = self.ended_by is EndedBy.CARRIER or self.close_code in _CLEAN_CLOSE
        timed_out = any(t.outcome is TurnOutcome.TIMED_OUT for t in self.turns)
        return clean and not timed_out and not self.problems and not self.action_error

    def to_json(self) -> dict[str, object]:
        return {
            "call_sid": self.sids.call_sid,
            "stream_sid": self.sids.stream_sid,
            "account_sid": self.sids.account_sid,
            "turns": [t.to_json() for t in self.turns],
            "greeting_audio_seconds": round(len(self.greeting_pcm) / (2 * SAMPLE_RATE), 3),
            "reply_audio_seconds": round(self.reply_audio_seconds, 3),
            "media_sent": self.media_sent,
            "media_received": self.media_received,
            "marks_echoed": len(self.marks),
            "clears_ms": [round((t - self.started_at) * 1000.0, 1) for t in self.clears],
            "ended_by": str(self.ended_by),
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "marks_unreturned": self.marks_unreturned,
            "problems": dict(self.problems),
            "action": None if self.action is None else self.action.to_json(),
            "action_error": self.action_error,
            "unanswered": self.unanswered,
            "ok": self.ok,
        }


# -- the carrier ---------------------------------------------------------------------------
