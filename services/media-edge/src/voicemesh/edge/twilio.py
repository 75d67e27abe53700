"""The Twilio Media Streams transport: a `<Connect><Stream url="wss://…/v1/twilio">` pointed
at the edge just works (see docs/telephony.md).

- In: `connected`, `start` (customParameters: `agent` picks the agent, `from` / `to` name
  the call's parties, the rest is session metadata), `media` (base64 μ-law 8 kHz, any size;
  a hole in the media timestamps is filled with silence so frames stay gapless), `dtmf`,
  `mark` (Twilio has played everything before it), `stop`. Media quality is measured on
  the `media` timestamps: their holes are frames lost (and those filled, frames concealed),
  and each message's arrival against its timestamp gives the jitter.
- Out: `media`, `mark`, `clear`. Every request must carry a valid `X-Twilio-Signature` over
  the configured public stream URL; without an auth token the stream is refused.
- Transfer: the edge ends the stream after the agent's last words; the TwiML's
  `<Connect action="…/v1/twilio/connect-action" method="GET">` callback is answered here with
  `<Dial>` to the target (or `<Hangup/>` for a call that simply ended).

Malformed messages are counted and dropped; the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE, Framer
from voicemesh.audio.g711 import ulaw_decode, ulaw_encode
from voicemesh.audio.resample import StreamResampler
from voicemesh.mesh.metrics import ServiceMetrics

from . import twilio_wire as tw
from .ingress import HttpRequest, HttpResponse, Socket, SocketClosed, WebSocketIngress
from .media_quality import FRAME_MS, JitterEstimator, frames_in
from .port import (
    CallHandler,
    CallInfo,
    CallTransport,
    Dtmf,
    EndReason,
    Frame,
    Hangup,
    MarkPlayed,
    MediaPort,
    PortEvent,
    Transferred,
)
from .twilio_signature import valid_signature

log = logging.getLogger(__name__)
PATH = "/v1/twilio"
LABEL = "twilio"  # the transport label of its metrics
ACTION_PATH = "/v1/twilio/connect-action"
TWILIO_RATE = 8000
TWILIO_FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
START_TIMEOUT_S = 10.0
MAX_GAP_FILL_MS = 1000  # a hole in the media longer than this is filled only this far
_ULAW_SILENCE_MS = 20
_RESERVED_PARAMETERS = ("agent", "from", "to")


class TransferBook:
    """Where each transferred call should go, by Twilio CallSid, until the <Connect action>
    callback asks (bounded; entries expire)."""

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 600.0) -> None:
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_s

    def record(self, call_sid: str, target: str, now: float) -> None:
        self._entries[call_sid] = (target, now)
        self._entries.move_to_end(call_sid)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def take(self, call_sid: str, now: float) -> str | None:
        entry = self._entries.pop(call_sid, None)
        if entry is None or now - entry[1] > self._ttl:
            return None
        return entry[0]


def connect_action_twiml(target: str | None) -> str:
    """What Twilio runs when the stream has ended: dial the transfer target, or hang up."""
    if target is None:
        return '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'
    noun = "Sip" if target.lower().startswith(("sip:", "sips:")) else "Number"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Dial><{noun}>{escape(target)}</{noun}></Dial></Response>"
    )


class TwilioPort(MediaPort):
    transport_label = LABEL

    def __init__(
        self,
        ws: Socket,
        start: tw.Start,
        info: CallInfo,
        transport: TwilioStreamTransport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self._ws = ws
        self._start = start
        self._sid = start.stream_sid
        self._transport = transport
        self._metrics = transport.metrics
        self._sequence = tw.SequenceTracker()
        self._sequence.observe(start.sequence_number)
        self._inbound = StreamResampler(TWILIO_RATE, SAMPLE_RATE)
        self._outbound = StreamResampler(SAMPLE_RATE, TWILIO_RATE)
        self._framer = Framer(FRAME_BYTES)
        self._out_framer = Framer(TWILIO_FRAME_BYTES)  # 20 ms of μ-law a media message
        self._pending: deque[PortEvent] = deque()
        self._next_timestamp_ms: int | None = None
        self._closed = False
        self._clock = clock
        self._jitter = JitterEstimator()

    async def receive(self) -> PortEvent:
        while not self._pending:
            try:
                raw = await self._ws.recv()
            except SocketClosed:
                return Hangup("twilio closed the stream")
            try:
                msg = tw.parse_message(raw)
            except tw.TwilioProtocolError as exc:
                self._metrics.error("bad_twilio_message")
                log.warning("bad twilio message", extra={"stream": self._sid, "error": str(exc)})
                continue
            if not isinstance(msg, tw.Connected):
                skipped = self._sequence.observe(msg.sequence_number)
                if skipped:
                    self._metrics.error("twilio_sequence_gap" if skipped > 0 else "twilio_out_of_order")
            if isinstance(msg, tw.Media):
                self._media(msg)
            elif isinstance(msg, tw.Mark):
                self._pending.append(MarkPlayed(msg.name))
            elif isinstance(msg, tw.Dtmf):
                self._pending.append(Dtmf(msg.digit))
            elif isinstance(msg, tw.Stop):
                return Hangup("caller hung up")
            elif isinstance(msg, tw.Start):
                self._metrics.error("bad_twilio_message")
                log.warning("second start on a twilio stream", extra={"stream": self._sid})
        return self._pending.popleft()

    def _media(self, msg: tw.Media) -> None:
        if msg.track not in ("inbound", "inbound_track", ""):
            return  # only the caller's audio is ours to hear
        jitter = self._jitter.arrived(self._clock(), msg.timestamp_ms / 1000)
        if jitter is not None:
            self._metrics.observe_jitter(LABEL, jitter)
        pcm = b""
        expected = self._next_timestamp_ms
        if expected is not None and msg.timestamp_ms >= expected + FRAME_MS:
            missing_ms = msg.timestamp_ms - expected
            self._metrics.frames_lost(LABEL, frames_in(missing_ms))
            if missing_ms > _ULAW_SILENCE_MS:
                # media went missing upstream: conceal with silence, never skip
                gap_ms = min(missing_ms, MAX_GAP_FILL_MS)
                self._metrics.dropped("twilio_media_gap")
                self._metrics.frames_concealed(LABEL, frames_in(gap_ms))
                pcm = bytes(gap_ms * TWILIO_RATE // 1000 * 2)
        pcm += ulaw_decode(msg.payload)
        self._next_timestamp_ms = msg.timestamp_ms + len(msg.payload) * 1000 // TWILIO_RATE
        for frame in self._framer.push(self._inbound.process(pcm)):
            self._pending.append(Frame(frame))

    async def _send(self, text: str) -> None:
        if self._closed:
            return
        try:
            await self._ws.send(text)
        except SocketClosed:
            self._closed = True

    async def play(self, pcm: bytes) -> None:
        out = self._outbound.process(pcm)
        for chunk in self._out_framer.push(ulaw_encode(out)) if out else ():
            await self._send(tw.encode_media(self._sid, chunk))

    async def mark(self, name: str) -> bool:
        rest = self._out_framer.flush(pad=False)  # what precedes the mark goes before it
        if rest:
            await self._send(tw.encode_media(self._sid, rest))
        await self._send(tw.encode_mark(self._sid, name))
        return self._closed  # Twilio echoes the mark once it has played what came before

    async def clear(self) -> None:
        await self._send(tw.encode_clear(self._sid))

    async def transfer(self, target: str) -> Transferred:
        self._transport.transfers.record(self._start.call_sid, target, time.monotonic())
        return Transferred("twilio-connect-action")

    async def send_dtmf(self, digits: str) -> None:
        # Media Streams carries no outbound DTMF: say so rather than drop it silently
        self._metrics.error("dtmf_unsupported")
        log.warning("the twilio stream cannot send dtmf to the caller", extra={"stream": self._sid})

    async def close(self, reason: EndReason, message: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        if message:
            log.warning("twilio call ended", extra={"stream": self._sid, "reason": reason.value})
        with contextlib.suppress(Exception):
            await self._ws.close(1000, reason.value[:100])


class TwilioStreamTransport(CallTransport):
    name = "twilio-stream"
    transport_label = LABEL

    def __init__(
        self,
        ingress: WebSocketIngress,
        metrics: ServiceMetrics,
        *,
        auth_token: str,
        stream_url: str = "",
    ) -> None:
        self._ingress = ingress
        self.metrics = metrics
        self._auth_token = auth_token
        self._stream_url = stream_url
        self.transfers = TransferBook()
        self._handler: CallHandler | None = None

    def describe(self) -> str:
        return self.stream_url

    @property
    def stream_url(self) -> str:
        """The URL Twilio connects to, and signs: configured, else this edge's own."""
        return self._stream_url or self._ingress.url(PATH)

    @property
    def action_url(self) -> str:
        """The <Connect action> URL: the stream URL's host over http(s)."""
        parts = urlsplit(self.stream_url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return urlunsplit((scheme, parts.netloc, ACTION_PATH, "", ""))

    def _verify(self, request: HttpRequest, public_url: str) -> tuple[HTTPStatus, str] | None:
        """Twilio signs the URL it requested: our public URL with the query it sent."""
        query = urlsplit(request.path).query
        signed_url = public_url + (f"?{query}" if query else "")
        if not self._auth_token:
            return HTTPStatus.FORBIDDEN, "the Twilio stream is not configured (VOICEMESH_TWILIO_AUTH_TOKEN)"
        signature = request.headers.get("X-Twilio-Signature", "")
        if not valid_signature(self._auth_token, signed_url, signature):
            return HTTPStatus.FORBIDDEN, "X-Twilio-Signature does not match"
        return None

    def _authorize_stream(self, request: HttpRequest) -> tuple[HTTPStatus, str] | None:
        return self._verify(request, self.stream_url)

    def _authorize_action(self, request: HttpRequest) -> tuple[HTTPStatus, str] | None:
        return self._verify(request, self.action_url)

    async def _connect_action(self, request: HttpRequest) -> HttpResponse:
        params = parse_qs(urlsplit(request.path).query)
        call_sid = params.get("CallSid", [""])[0]
        target = self.transfers.take(call_sid, time.monotonic()) if call_sid else None
        return HttpResponse(HTTPStatus.OK, connect_action_twiml(target), "text/xml")

    async def start(self, handler: CallHandler) -> None:
        self._handler = handler
        self._ingress.add_socket(PATH, self._authorize_stream, self._serve_connection, transport_label=LABEL)
        self._ingress.add_http(ACTION_PATH, self._authorize_action, self._connect_action)

    async def stop(self) -> None:
        return None  # the ingress stops accepting for every transport

    async def _read_start(self, ws: Socket) -> tw.Start:
        """Messages before `start` (`connected`) are skipped; anything else is refused."""
        while True:
            raw = await ws.recv()
            msg = tw.parse_message(raw)
            if isinstance(msg, tw.Start):
                return msg
            if not isinstance(msg, tw.Connected):
                raise tw.TwilioProtocolError(f"expected start, got a {type(msg).__name__.lower()} message")

    async def _serve_connection(self, ws: Socket) -> None:
        assert self._handler is not None
        try:
            start = await asyncio.wait_for(self._read_start(ws), START_TIMEOUT_S)
            fmt = start.media_format
            if (fmt.encoding, fmt.sample_rate, fmt.channels) != ("audio/x-mulaw", TWILIO_RATE, 1):
                raise tw.TwilioProtocolError(
                    f"mediaFormat must be audio/x-mulaw 8000 Hz mono, got "
                    f"{fmt.encoding} {fmt.sample_rate} Hz x{fmt.channels}"
                )
        except (TimeoutError, SocketClosed):
            await ws.close(1008, "expected a start message")
            return
        except tw.TwilioProtocolError as exc:
            self.metrics.error("bad_twilio_message")
            log.warning("twilio stream refused", extra={"error": str(exc)})
            await ws.close(1008, str(exc)[:120])
            return
        params = start.custom_parameters
        info = CallInfo(
            transport=self.name,
            agent=params.get("agent", ""),
            caller=params.get("from", ""),
            callee=params.get("to", ""),
            carrier_call_id=start.call_sid,
            metadata={k: v for k, v in params.items() if k not in _RESERVED_PARAMETERS},
        )
        await self._handler(TwilioPort(ws, start, info, self))
