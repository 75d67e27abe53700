"""The wire format of a Twilio Media Streams compatible WebSocket (bidirectional, `<Connect><Stream>`).

Pure: no sockets, no asyncio, no clock. `parse_message` turns one text frame from Twilio into a
typed message, `encode_*` build the frames the server sends, `SequenceTracker` checks the
`sequenceNumber` continuity. Malformed input raises `TwilioProtocolError` naming what is wrong,
and nothing else. See docs/telephony.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .port import DTMF_DIGITS

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "MediaFormat",
    "SequenceTracker",
    "Start",
    "Stop",
    "TwilioMessage",
    "TwilioProtocolError",
    "encode_clear",
    "encode_mark",
    "encode_media",
    "parse_message",
]

# Inbound frames are small (a 20 ms media message is ~300 bytes); anything larger is refused
# before JSON parsing, so a hostile peer cannot make the parser allocate or recurse much.
MAX_MESSAGE_BYTES = 64 * 1024
# Numbers on the wire (sequenceNumber, chunk, timestamp) beyond this are not a real stream.
_MAX_NUMBER = 2**63 - 1
# Events only the server sends; one arriving from Twilio is a protocol error.
_SERVER_EVENTS = frozenset({"clear"})


class TwilioProtocolError(ValueError):
    """A message Twilio's protocol does not allow; the text names what is wrong,
    e.g. 'media.payload is not valid base64'."""


@dataclass(frozen=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    sequence_number: int
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    # May hold phone numbers (`from`, `to`): kept out of repr so it never lands in a log line.
    custom_parameters: dict[str, str] = field(repr=False, hash=False)
    media_format: MediaFormat


@dataclass(frozen=True)
class Media:
    stream_sid: str
    sequence_number: int
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes = field(repr=False)  # decoded μ-law bytes


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    sequence_number: int
    track: str
    digit: str


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    sequence_number: int
    name: str


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    sequence_number: int
    account_sid: str
    call_sid: str


TwilioMessage = Connected | Start | Media | Dtmf | Mark | Stop


# --- parsing -------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    raise TwilioProtocolError(message)


def _show(value: object) -> str:
    """A short, safe rendering of a bad value for an error message (never a deep repr)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value[:40] + "…") if len(value) > 40 else repr(value)
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 40 else f"a {len(text)}-digit number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        _fail(f"{where} is missing")
    return obj[key]


def _object(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = _get(obj, key, where)
    if not isinstance(value, dict):
        _fail(f"{where} must be an object, got {_show(value)}")
    return value


def _string(obj: Mapping[str, Any], key: str, where: str, *, empty: bool = False) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str):
        _fail(f"{where} must be a string, got {_show(value)}")
    if not value and not empty:
        _fail(f"{where} is empty")
    return value


def _integer(obj: Mapping[str, Any], key: str, where: str) -> int:
    """A non-negative integer sent as a JSON string of digits ("52"); a JSON integer is accepted too."""
    value = _get(obj, key, where)
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            _fail(f"{where} must be a non-negative integer string, got {_show(value)}")
        if len(value) > 19:
            _fail(f"{where} is too large, got {_show(value)}")
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            _fail(f"{where} must not be negative, got {_show(value)}")
        number = value
    else:
        _fail(f"{where} must be a non-negative integer string, got {_show(value)}")
    if number > _MAX_NUMBER:
        _fail(f"{where} is too large, got {_show(value)}")
    return number


def _base64(obj: Mapping[str, Any], key: str, where: str) -> bytes:
    text = _string(obj, key, where, empty=True)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        _fail(f"{where} is not valid base64")


def _top(event: str, key: str) -> str:
    return f"{key} of the {event!r} message"


def _stream_sid(msg: Mapping[str, Any], event: str) -> str:
    return _string(msg, "streamSid", _top(event, "streamSid"))


def _sequence_number(msg: Mapping[str, Any], event: str) -> int:
    return _integer(msg, "sequenceNumber", _top(event, "sequenceNumber"))


def _parse_connected(msg: Mapping[str, Any]) -> Connected:
    return Connected(
        protocol=_string(msg, "protocol", _top("connected", "protocol")),
        version=_string(msg, "version", _top("connected", "version")),
    )


def _parse_start(msg: Mapping[str, Any]) -> Start:
    sequence_number = _sequence_number(msg, "start")
    start = _object(msg, "start", "start")
    if "streamSid" in msg:
        stream_sid = _stream_sid(msg, "start")
        if "streamSid" in start and _string(start, "streamSid", "start.streamSid") != stream_sid:
            _fail("start.streamSid differs from the message's streamSid")
    else:
        stream_sid = _string(start, "streamSid", "start.streamSid")
    tracks = _get(start, "tracks", "start.tracks")
    if not isinstance(tracks, list):
        _fail(f"start.tracks must be an array of strings, got {_show(tracks)}")
    for i, track in enumerate(tracks):
        if not isinstance(track, str):
            _fail(f"start.tracks[{i}] must be a string, got {_show(track)}")
    fmt = _object(start, "mediaFormat", "start.mediaFormat")
    media_format = MediaFormat(
        encoding=_string(fmt, "encoding", "start.mediaFormat.encoding"),
        sample_rate=_integer(fmt, "sampleRate", "start.mediaFormat.sampleRate"),
        channels=_integer(fmt, "channels", "start.mediaFormat.channels"),
    )
    if media_format.sample_rate == 0:
        _fail("start.mediaFormat.sampleRate must be positive, got 0")
    if media_format.channels == 0:
        _fail("start.mediaFormat.channels must be positive, got 0")
    params = start.get("customParameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        _fail(f"start.customParameters must be an object, got {_show(params)}")
    for name, value in params.items():
        if not isinstance(value, str):
            _fail(f"start.customParameters[{_show(name)}] must be a string, got {_show(value)}")
    return Start(
        stream_sid=stream_sid,
        sequence_number=sequence_number,
        account_sid=_string(start, "accountSid", "start.accountSid"),
        call_sid=_string(start, "callSid", "start.callSid"),
        tracks=tuple(tracks),
        custom_parameters=dict(params),
        media_format=media_format,
    )


def _parse_media(msg: Mapping[str, Any]) -> Media:
    stream_sid = _stream_sid(msg, "media")
    sequence_number = _sequence_number(msg, "media")
    media = _object(msg, "media", "media")
    return Media(
        stream_sid=stream_sid,
        sequence_number=sequence_number,
        track=_string(media, "track", "media.track"),
        chunk=_integer(media, "chunk", "media.chunk"),
        timestamp_ms=_integer(media, "timestamp", "media.timestamp"),
        payload=_base64(media, "payload", "media.payload"),
    )


def _parse_dtmf(msg: Mapping[str, Any]) -> Dtmf:
    stream_sid = _stream_sid(msg, "dtmf")
    sequence_number = _sequence_number(msg, "dtmf")
    dtmf = _object(msg, "dtmf", "dtmf")
    track = _string(dtmf, "track", "dtmf.track")
    digit = _string(dtmf, "digit", "dtmf.digit", empty=True)
    if digit not in DTMF_DIGITS:
        _fail(f"dtmf.digit must be one of 0-9, *, #, A-D, got {_show(digit)}")
    return Dtmf(stream_sid=stream_sid, sequence_number=sequence_number, track=track, digit=digit)


def _parse_mark(msg: Mapping[str, Any]) -> Mark:
    stream_sid = _stream_sid(msg, "mark")
    sequence_number = _sequence_number(msg, "mark")
    mark = _object(msg, "mark", "mark")
    name = _string(mark, "name", "mark.name", empty=True)
    return Mark(stream_sid=stream_sid, sequence_number=sequence_number, name=name)


def _parse_stop(msg: Mapping[str, Any]) -> Stop:
    stream_sid = _stream_sid(msg, "stop")
    sequence_number = _sequence_number(msg, "stop")
    stop = _object(msg, "stop", "stop")
    return Stop(
        stream_sid=stream_sid,
        sequence_number=sequence_number,
        account_sid=_string(stop, "accountSid", "stop.accountSid"),
        call_sid=_string(stop, "callSid", "stop.callSid"),
    )


_PARSERS = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _load(text: str | bytes) -> object:
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        if len(raw) > MAX_MESSAGE_BYTES:
            _fail(f"message is {len(raw)} bytes, more than the limit of {MAX_MESSAGE_BYTES}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            _fail(f"message is not valid UTF-8 (at byte {exc.start})")
    elif isinstance(text, str):
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if len(text) > MAX_MESSAGE_BYTES or size > MAX_MESSAGE_BYTES:
            _fail(f"message is {size} bytes, more than the limit of {MAX_MESSAGE_BYTES}")
    else:
        _fail(f"message must be text or bytes, got {type(text).__name__}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        _fail(f"message is not valid JSON: {exc.msg} at position {exc.pos}")
    except RecursionError:
        _fail("message is not valid JSON: nested too deeply")
    except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
        _fail(f"message is not valid JSON: {exc}")


def parse_message(text: str | bytes) -> TwilioMessage:
    """One WebSocket frame from Twilio as a typed message; raises `TwilioProtocolError` only.

    Unknown keys are ignored (Twilio may add some); unknown events are refused.
    """
    msg = _load(text)
    if not isinstance(msg, dict):
        _fail(f"message must be a JSON object, got {_show(msg)}")
    event = _get(msg, "event", "event")
    if not isinstance(event, str):
        _fail(f"event must be a string, got {_show(event)}")
    parser = _PARSERS.get(event)
    if parser is None:
        if event in _SERVER_EVENTS:
            _fail(f"event {event!r} is sent by the server, never by Twilio")
        _fail(f"unknown event {_show(event)}")
    return parser(msg)


# --- encoding ------------------------------------------------------------------------------


def _dumps(obj: dict[str, object]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _check_stream_sid(stream_sid: str) -> None:
    if not isinstance(stream_sid, str) or not stream_sid:
        raise TwilioProtocolError(f"stream_sid must be a non-empty string, got {_show(stream_sid)}")


def encode_media(stream_sid: str, ulaw: bytes) -> str:
    """Audio for the caller: raw μ-law 8 kHz mono, any length, no file header."""
    _check_stream_sid(stream_sid)
    if not isinstance(ulaw, bytes | bytearray | memoryview):
        raise TwilioProtocolError(f"ulaw must be bytes, got {type(ulaw).__name__}")
    payload = base64.b64encode(ulaw).decode("ascii")
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def encode_mark(stream_sid: str, name: str) -> str:
    """A mark Twilio returns, with the same name, once the audio queued before it has played."""
    _check_stream_sid(stream_sid)
    if not isinstance(name, str):
        raise TwilioProtocolError(f"mark name must be a string, got {_show(name)}")
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def encode_clear(stream_sid: str) -> str:
    """Empty Twilio's playback buffer (barge-in); Twilio then returns every pending mark."""
    _check_stream_sid(stream_sid)
    return _dumps({"event": "clear", "streamSid": stream_sid})


# --- sequence numbers ----------------------------------------------------------------------


@dataclass
class SequenceTracker:
    """Checks `sequenceNumber` continuity: `start` is 1 and every later message from Twilio
    takes the next number, across all event types (`connected` has none: don't feed it).

    `observe` returns how many numbers were skipped (0 normally), or -1 when the number is not
    after the last one seen (repeated or backward): the caller counts it and carries on. It
    never raises. A skipped or out-of-order number does not move `last` backwards.
    """

    last: int = 0
    skipped: int = 0
    out_of_order: int = 0

    def observe(self, sequence_number: int) -> int:
        if sequence_number <= self.last:
            self.out_of_order += 1
            return -1
        gap = sequence_number - self.last - 1
        self.last = sequence_number
        self.skipped += gap
        return gap
