"""The native WebSocket media stream (used by the CLI and SDKs): protobuf-JSON control
messages (`voicemesh.v1.edge_pb2`) and binary PCM16 audio, authenticated by a bearer token.
See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import deque
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from google.protobuf import json_format
from google.protobuf.message import Message
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE, Framer
from voicemesh.audio.resample import StreamResampler
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import edge_pb2

from .transport import (
    CallChannel,
    CallHandler,
    CallRequest,
    CallTransport,
    Hangup,
    Inbound,
    InboundFrame,
    TurnTiming,
)

log = logging.getLogger(__name__)
PATH = "/v1/call"
SUPPORTED_RATES = (8000, 16000, 24000, 48000)
START_TIMEOUT_S = 10.0
# Frame index -> message index entries kept for timing reports (one minute of audio).
_INDEX_HISTORY = 3000


def encode(msg: Message) -> str:
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)


class BadMessage(ValueError):
    """A client message the protocol does not allow; the text says what is wrong."""


def parse_client_message(text: str) -> edge_pb2.ClientMessage:
    msg = edge_pb2.ClientMessage()
    try:
        json_format.Parse(text, msg)
    except json_format.ParseError as exc:
        raise BadMessage(f"not a ClientMessage: {exc}") from None
    if msg.WhichOneof("kind") is None:
        raise BadMessage("message has none of: start, stop")
    return msg


class NativeChannel(CallChannel):
    def __init__(self, ws: ServerConnection, sample_rate: int, metrics: ServiceMetrics) -> None:
        self._ws = ws
        self._rate = sample_rate
        self._metrics = metrics
        self._framer = Framer(FRAME_BYTES)
        self._inbound = StreamResampler(sample_rate, SAMPLE_RATE)
        self._outbound = StreamResampler(SAMPLE_RATE, sample_rate)
        self._pending: deque[bytes] = deque()
        self._frames = 0
        self._messages = 0
        self._frame_message: deque[tuple[int, int]] = deque(maxlen=_INDEX_HISTORY)
        self._closed = False

    async def receive(self) -> Inbound:
        while not self._pending:
            try:
                raw = await self._ws.recv()
            except ConnectionClosed:
                return Hangup("caller disconnected")
            if isinstance(raw, bytes):
                message_index = self._messages
                self._messages += 1
                pcm = self._inbound.process(raw) if raw else b""
                for frame in self._framer.push(pcm):
                    self._pending.append(frame)
                    self._frame_message.append((self._frames + len(self._pending) - 1, message_index))
                continue
            try:
                msg = parse_client_message(raw)
            except BadMessage as exc:
                self._metrics.error("bad_client_message")
                await self.send_error("bad_message", str(exc))
                continue
            if msg.WhichOneof("kind") == "stop":
                return Hangup(msg.stop.reason or "caller hung up")
            self._metrics.error("bad_client_message")
            await self.send_error("bad_message", "the call has already started")
        frame = self._pending.popleft()
        index = self._frames
        self._frames += 1
        return InboundFrame(index, frame)

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
        except ConnectionClosed:
            self._closed = True

    async def _send_msg(self, **kind: Message) -> None:
        await self._send(encode(edge_pb2.ServerMessage(**kind)))

    async def send_audio(self, pcm: bytes) -> None:
        out = self._outbound.process(pcm)
        if out:
            await self._send(out)

    async def send_ready(self, session_id: str, agent: str) -> None:
        await self._send_msg(
            ready=edge_pb2.CallReady(session_id=session_id, agent=agent, sample_rate_hz=self._rate)
        )

    async def send_state(self, state: str) -> None:
        await self._send_msg(state=edge_pb2.StateChanged(state=state))

    async def send_transcript(self, turn_id: str, text: str, final: bool) -> None:
        await self._send_msg(transcript=edge_pb2.TranscriptUpdate(turn_id=turn_id, text=text, final=final))

    async def send_response(self, response_id: str, turn_id: str, text: str, final: bool) -> None:
        await self._send_msg(
            response=edge_pb2.ResponseText(response_id=response_id, turn_id=turn_id, text=text, final=final)
        )

    async def send_mark(self, response_id: str, name: str) -> None:
        await self._send_msg(mark=edge_pb2.PlayoutMark(response_id=response_id, name=name))

    async def send_timing(self, timing: TurnTiming) -> None:
        await self._send_msg(
            timing=edge_pb2.TurnTiming(
                turn_id=timing.turn_id,
                last_voiced_message=self.message_index(timing.last_voiced_frame),
                endpoint_ms=round(timing.endpoint_ms),
                stt_final_ms=round(timing.stt_final_ms),
                first_token_ms=round(timing.first_token_ms),
                tts_first_audio_ms=round(timing.tts_first_audio_ms),
                edge_voice_to_voice_ms=round(timing.edge_voice_to_voice_ms),
            )
        )

    async def clear(self) -> None:
        return None  # audio is paced by the edge: nothing is buffered at the far end

    async def send_error(self, code: str, message: str) -> None:
        await self._send_msg(error=edge_pb2.CallError(code=code, message=message))

    async def close(self, reason: str) -> None:
        await self._send_msg(end=edge_pb2.CallEnd(reason=reason))
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close(1000, reason[:100])


class NativeWebSocketTransport(CallTransport):
    name = "native-ws"

    def __init__(self, host: str, port: int, token: str, metrics: ServiceMetrics) -> None:
        if not token:
            raise ValueError("the native WebSocket transport needs an access token")
        self._host = host
        self._port = port
        self._token = token.encode()
        self._metrics = metrics
        self._server: Server | None = None
        self._handler: CallHandler | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(next(iter(self._server.sockets)).getsockname()[1])

    def describe(self) -> str:
        return f"ws://{self._host}:{self.port}{PATH}"

    def _authorized(self, request: Request) -> bool:
        supplied = ""
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            supplied = header[7:].strip()
        else:  # browsers cannot set headers on a WebSocket: allow ?token=
            supplied = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        return hmac.compare_digest(supplied.encode(), self._token)

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            return conn.respond(HTTPStatus.NOT_FOUND, f"no such endpoint; calls go to {PATH}\n")
        if not self._authorized(request):
            self._metrics.error("unauthorized")
            return conn.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong access token\n")
        return None

    async def start(self, handler: CallHandler) -> None:
        self._handler = handler
        try:
            self._server = await serve(
                self._serve_connection,
                self._host,
                self._port,
                process_request=self._process_request,
                max_size=1 << 20,
                ping_interval=20,
                ping_timeout=20,
            )
        except OSError as exc:
            raise OSError(f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}") from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=False)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        assert self._handler is not None
        try:
            raw = await asyncio.wait_for(ws.recv(), START_TIMEOUT_S)
        except (TimeoutError, ConnectionClosed):
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
        channel = NativeChannel(ws, rate, self._metrics)
        request = CallRequest(self.name, msg.start.agent, dict(msg.start.metadata))
        await self._handler(channel, request)
