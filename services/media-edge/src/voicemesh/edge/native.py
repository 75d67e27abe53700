"""The native WebSocket media stream (used by the CLI and SDKs): protobuf-JSON control
messages (`voicemesh.v1.edge_pb2`) and binary PCM16 audio, authenticated by a bearer token.
Its port is also the call's observer: the client is shown states, transcripts, reply text,
playout marks and timings. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from google.protobuf import json_format

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE, Framer
from voicemesh.audio.resample import StreamResampler
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import edge_pb2

from .ingress import HttpRequest, Socket, SocketClosed, WebSocketIngress
from .media_quality import JitterEstimator
from .observer_wire import JsonObserver, encode
from .port import (
    CallHandler,
    CallInfo,
    CallObserver,
    CallTransport,
    Dtmf,
    EndReason,
    Frame,
    Hangup,
    MediaPort,
    PortEvent,
    Transferred,
    check_digits,
)

log = logging.getLogger(__name__)
PATH = "/v1/call"
LABEL = "native"  # the transport label of its metrics
SUPPORTED_RATES = (8000, 16000, 24000, 48000)
START_TIMEOUT_S = 10.0
# Frame index -> message index entries kept for timing reports (one minute of audio).
_INDEX_HISTORY = 3000


class BadMessage(ValueError):
    """A client message the protocol does not allow; the text says what is wrong."""


def parse_client_message(text: str) -> edge_pb2.ClientMessage:
    msg = edge_pb2.ClientMessage()
    try:
        json_format.Parse(text, msg)
    except json_format.ParseError as exc:
        raise BadMessage(f"not a ClientMessage: {exc}") from None
    kind = msg.WhichOneof("kind")
    if kind is None:
        raise BadMessage("message has none of: start, stop, dtmf")
    if kind == "dtmf":
        try:
            check_digits(msg.dtmf.digits)
        except ValueError as exc:
            raise BadMessage(f"dtmf.digits: {exc}") from None
    return msg


class NativePort(MediaPort, JsonObserver):
    """Media time of the caller's audio is the samples it has sent (at its own rate): jitter is
    each audio message's arrival against it. Over TCP nothing is lost or concealed."""

    transport_label = LABEL

    def __init__(
        self,
        ws: Socket,
        info: CallInfo,
        sample_rate: int,
        metrics: ServiceMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self._ws = ws
        self._rate = sample_rate
        self._metrics = metrics
        self._framer = Framer(FRAME_BYTES)
        self._inbound = StreamResampler(sample_rate, SAMPLE_RATE)
        self._outbound = StreamResampler(SAMPLE_RATE, sample_rate)
        self._pending: deque[PortEvent] = deque()
        self._frames = 0
        self._messages = 0
        self._frame_message: deque[tuple[int, int]] = deque(maxlen=_INDEX_HISTORY)
        self._closed = False
        self._clock = clock
        self._jitter = JitterEstimator()
        self._samples_in = 0  # caller samples received, at the caller's rate: media time

    def observer(self) -> CallObserver:
        return self

    async def receive(self) -> PortEvent:
        while not self._pending:
            try:
                raw = await self._ws.recv()
            except SocketClosed:
                return Hangup("caller disconnected")
            if isinstance(raw, bytes):
                if raw:
                    jitter = self._jitter.arrived(self._clock(), self._samples_in / self._rate)
                    self._samples_in += len(raw) // 2
                    if jitter is not None:
                        self._metrics.observe_jitter(LABEL, jitter)
                message_index = self._messages
                self._messages += 1
                pcm = self._inbound.process(raw) if raw else b""
                for frame in self._framer.push(pcm):
                    self._frame_message.append((self._frames, message_index))
                    self._frames += 1
                    self._pending.append(Frame(frame))
                continue
            try:
                msg = parse_client_message(raw)
            except BadMessage as exc:
                self._metrics.error("bad_client_message")
                await self.error("bad_message", str(exc))
                continue
            kind = msg.WhichOneof("kind")
            if kind == "stop":
                return Hangup(msg.stop.reason or "caller hung up")
            if kind == "dtmf":
                self._pending.append(Dtmf(msg.dtmf.digits))
                continue
            self._metrics.error("bad_client_message")
            await self.error("bad_message", "the call has already started")
        return self._pending.popleft()

    def message_index(self, frame_index: int) -> int:
        for frame, message in reversed(self._frame_message):
            if frame == frame_index:
                return message
        return frame_index

    async def _send(self, data: str | bytes) -> None:
        if self._closed:
            return
        try:
            await self._ws.send(data)
        except SocketClosed:
            self._closed = True

    # ---- MediaPort ----

    async def play(self, pcm: bytes) -> None:
        out = self._outbound.process(pcm)
        if out:
            await self._send(out)

    async def mark(self, name: str) -> bool:
        return True  # audio is paced by the edge: what was sent has been played

    async def clear(self) -> None:
        return None  # nothing is buffered at the far end

    async def transfer(self, target: str) -> Transferred:
        await self.send_message(transfer=edge_pb2.CallTransfer(target=target))
        return Transferred("native")

    async def send_dtmf(self, digits: str) -> None:
        await self.send_message(dtmf=edge_pb2.SendDigits(digits=digits))

    async def close(self, reason: EndReason, message: str = "") -> None:
        await self.send_message(end=edge_pb2.CallEnd(reason=reason.value))
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close(1000, reason.value[:100])

    # ---- CallObserver (observer_wire.JsonObserver) ----

    @property
    def sample_rate_hz(self) -> int:  # type: ignore[override]
        return self._rate

    async def send_text(self, text: str) -> None:
        await self._send(text)


class NativeWebSocketTransport(CallTransport):
    name = "native-ws"
    transport_label = LABEL

    def __init__(self, ingress: WebSocketIngress, token: str, metrics: ServiceMetrics) -> None:
        if not token:
            raise ValueError("the native WebSocket transport needs an access token")
        self._ingress = ingress
        self._token = token.encode()
        self._metrics = metrics
        self._handler: CallHandler | None = None

    def describe(self) -> str:
        return self._ingress.url(PATH)

    def _authorize(self, request: HttpRequest) -> tuple[HTTPStatus, str] | None:
        supplied = ""
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            supplied = header[7:].strip()
        else:  # browsers cannot set headers on a WebSocket: allow ?token=
            supplied = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        if hmac.compare_digest(supplied.encode(), self._token):
            return None
        return HTTPStatus.UNAUTHORIZED, "missing or wrong access token"

    async def start(self, handler: CallHandler) -> None:
        self._handler = handler
        self._ingress.add_socket(PATH, self._authorize, self._serve_connection, transport_label=LABEL)

    async def stop(self) -> None:
        return None  # the ingress stops accepting for every transport

    async def _serve_connection(self, ws: Socket) -> None:
        assert self._handler is not None
        try:
            raw = await asyncio.wait_for(ws.recv(), START_TIMEOUT_S)
        except (TimeoutError, SocketClosed):
            await ws.close(1008, "expected a start message")
            return
        try:
            if not isinstance(raw, str):
                raise BadMessage("the first message must be a start message (text), not audio")
            msg = parse_client_message(raw)
            if msg.WhichOneof("kind") != "start":
                raise BadMessage("the first message must be start")
            rate = msg.start.sample_rate_hz or SAMPLE_RATE
            if rate not in SUPPORTED_RATES:
                raise BadMessage(f"sample_rate_hz {rate} is not supported (use one of {SUPPORTED_RATES})")
        except BadMessage as exc:
            self._metrics.error("bad_client_message")
            await ws.send(
                encode(edge_pb2.ServerMessage(error=edge_pb2.CallError(code="bad_message", message=str(exc))))
            )
            await ws.close(1008, "bad start message")
            return
        metadata = dict(msg.start.metadata)
        info = CallInfo(
            transport=self.name,
            agent=msg.start.agent,
            caller=metadata.get("from", ""),
            callee=metadata.get("to", ""),
            metadata=metadata,
        )
        await self._handler(NativePort(ws, info, rate, self._metrics))
