"""Place a scripted call on media-edge's native WebSocket: the async shell around CallScript.

Used by `voicemesh call`, the voice-to-voice benchmark and end-to-end tests:

    result = await place_call(url, token, [Path("question.wav")])
    print(result.transcript, result.latency_ms.voice_to_voice)

Two tasks move bytes: a paced sender (one 640-byte frame every 20 ms on the monotonic clock,
drift-corrected: frame i leaves at start + i * 20 ms) and a receiver. Every decision is the
script's (callscript.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.v1 import edge_pb2

from .callscript import FRAME_S, SAMPLE_RATE, CallScript, LatencyMs, TurnResult, Utterance

Clock = Callable[[], float]


class CallFailed(RuntimeError):
    """The call could not be placed (no edge, bad token, refused); the message is one line."""


@dataclass
class CallResult:
    """What happened on one scripted call. Reply fields exclude the greeting."""

    session_id: str
    agent: str
    greeting: str
    greeting_audio: bytes
    turns: list[TurnResult]
    ended_by: str  # "caller", "agent", or "edge" (the connection dropped)
    end_reason: str = ""
    transferred_to: str = ""  # the agent handed the call on to this number or SIP URI
    errors: list[str] = field(default_factory=list)  # call-level: edge errors, a dropped call
    # WAVs left out because the agent ended the call before they became a turn.
    unanswered: list[str] = field(default_factory=list)
    frames_sent: int = 0

    @property
    def ok(self) -> bool:
        """The call went as a caller would want: not dropped or failed by the edge, no
        call-level error, and every turn answered."""
        return self.ended_by != "edge" and not self.errors and all(t.error is None for t in self.turns)

    @property
    def transcript(self) -> str:
        return " ".join(t.transcript for t in self.turns if t.transcript)

    @property
    def reply_text(self) -> str:
        return " ".join(t.reply_text for t in self.turns if t.reply_text)

    @property
    def reply_audio(self) -> bytes:
        return b"".join(t.reply_audio for t in self.turns)

    @property
    def reply_audio_seconds(self) -> float:
        return len(self.reply_audio) / (2 * SAMPLE_RATE)

    @property
    def latency_ms(self) -> LatencyMs:
        """The median over turns of each stage."""
        return LatencyMs.median([t.latency for t in self.turns])

    def to_json(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "agent": self.agent,
            "greeting": self.greeting,
            "transcript": self.transcript,
            "reply_text": self.reply_text,
            "reply_audio_seconds": round(self.reply_audio_seconds, 3),
            "latency_ms": self.latency_ms.to_json(),
            "turns": [t.to_json() for t in self.turns],
            "ended_by": self.ended_by,
            "end_reason": self.end_reason,
            "transferred_to": self.transferred_to or None,
            "errors": list(self.errors),
            "unanswered": list(self.unanswered),
        }


def encode(msg: edge_pb2.ClientMessage) -> str:
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)


def decode(text: str | bytes) -> edge_pb2.ServerMessage:
    return json_format.Parse(text, edge_pb2.ServerMessage(), ignore_unknown_fields=True)


def load_utterances(wavs: Sequence[Path | str | bytes]) -> list[Utterance]:
    """WAV paths are read and converted (raises voicemesh.audio.wav.AudioFormatError);
    bytes are taken as PCM16 LE mono 16 kHz already."""
    from voicemesh.audio.wav import read_wav

    out = []
    for i, item in enumerate(wavs):
        if isinstance(item, bytes | bytearray):
            out.append(Utterance(f"audio[{i}]", bytes(item)))
        else:
            pcm, _info = read_wav(item)
            out.append(Utterance(str(item), pcm))
    return out


class CallClient:
    """One WebSocket call to media-edge, driven by a CallScript."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        agent: str = "",
        ready_timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.url = url
        self.token = token
        self.agent = agent
        self.ready_timeout_s = ready_timeout_s
        self._clock = clock

    async def run(
        self,
        utterances: Sequence[Utterance],
        *,
        turn_timeout_s: float = 20.0,
        wait_greeting: bool = True,
        greeting_timeout_s: float = 10.0,
        hangup_wait_s: float = 0.5,
    ) -> CallResult:
        def make_script(now: float) -> CallScript:
            return CallScript(
                utterances,
                now=now,
                wait_greeting=wait_greeting,
                greeting_timeout_s=greeting_timeout_s,
                turn_timeout_s=turn_timeout_s,
                hangup_wait_s=hangup_wait_s,
            )

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.ready_timeout_s,
                close_timeout=2.0,
                compression=None,
                proxy=None,
                max_size=2**20,
            )
        except InvalidURI:
            raise CallFailed(f"{self.url} is not a ws:// or wss:// URL") from None
        except InvalidStatus as exc:
            raise CallFailed(self._status_line(exc.response.status_code)) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            line = f"no media-edge at {self.url} (is `voicemesh up` running?)"
            if not isinstance(exc, ConnectionRefusedError):
                line += f": {exc.__class__.__name__}" + (f": {exc}" if str(exc) else "")
            raise CallFailed(line) from None
        try:
            return await self._call(ws, make_script)
        finally:
            await ws.close()

    def _status_line(self, status: int) -> str:
        if status in (401, 403):
            return (
                f"the media-edge at {self.url} rejected the token (HTTP {status}): "
                "pass --token or set VOICEMESH_EDGE_TOKEN"
            )
        return f"the media-edge at {self.url} answered HTTP {status} instead of a call (is the URL right?)"

    async def _call(self, ws: ClientConnection, make_script: Callable[[float], CallScript]) -> CallResult:
        start = edge_pb2.ClientMessage(
            start=edge_pb2.ClientStart(agent=self.agent, sample_rate_hz=SAMPLE_RATE)
        )
        try:
            await ws.send(encode(start))
        except ConnectionClosed:
            raise CallFailed(f"the media-edge closed the connection at once ({_close_detail(ws)})") from None
        ready = await self._wait_ready(ws)
        script = make_script(self._clock())  # the call's clock starts at `ready`
        sender = asyncio.create_task(self._send_loop(ws, script), name="call-sender")
        receiver = asyncio.create_task(self._receive_loop(ws, script), name="call-receiver")
        try:
            finished, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(sender, receiver)
        for task in finished:
            if (exc := task.exception()) is not None:
                raise exc
        if script.ended_by != "edge":
            stop = edge_pb2.ClientMessage(stop=edge_pb2.ClientStop(reason=f"ended by {script.ended_by}"))
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(stop))
        greeting, greeting_audio = script.greeting()
        return CallResult(
            session_id=ready.session_id,
            agent=ready.agent or self.agent,
            greeting=greeting,
            greeting_audio=greeting_audio,
            turns=script.turn_results(),
            ended_by=script.ended_by,
            end_reason=script.end_reason,
            transferred_to=script.transferred_to,
            errors=list(script.errors),
            unanswered=script.unanswered(),
            frames_sent=len(script.send_times),
        )

    async def _wait_ready(self, ws: ClientConnection) -> edge_pb2.CallReady:
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                async for message in ws:
                    if isinstance(message, bytes):
                        continue
                    msg = decode(message)
                    kind = msg.WhichOneof("kind")
                    if kind == "ready":
                        return msg.ready
                    if kind == "error":
                        err = msg.error
                        raise CallFailed(f"the edge refused the call: {err.code}: {err.message}")
        except TimeoutError:
            raise CallFailed(
                f"the media-edge at {self.url} sent no `ready` within {self.ready_timeout_s:g} s"
            ) from None
        except json_format.ParseError as exc:
            raise CallFailed(f"the media-edge sent a malformed message: {exc}") from None
        except ConnectionClosed:
            pass
        raise CallFailed(
            f"the media-edge closed the connection before the call was ready ({_close_detail(ws)})"
        )

    async def _send_loop(self, ws: ClientConnection, script: CallScript) -> None:
        """One frame per 20 ms: frame i is due at start + i * 20 ms, whatever came before."""
        clock = self._clock
        t0 = clock()
        i = 0
        while True:
            delay = t0 + i * FRAME_S - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = script.next_frame(clock())
            if frame is None:
                return
            try:
                await ws.send(frame)
            except ConnectionClosed:
                script.on_closed(clock(), _close_detail(ws))
                return
            i += 1

    async def _receive_loop(self, ws: ClientConnection, script: CallScript) -> None:
        try:
            async for message in ws:
                now = self._clock()
                if isinstance(message, bytes):
                    script.on_audio(message, now)
                else:
                    try:
                        msg = decode(message)
                    except json_format.ParseError:
                        script.errors.append("the edge sent a malformed message (ignored)")
                        continue
                    script.on_message(msg, now)
                if script.done:
                    return
        except ConnectionClosed:
            pass
        script.on_closed(self._clock(), _close_detail(ws))


def _close_detail(ws: ClientConnection) -> str:
    code = ws.close_code
    if code is None:
        return "no close frame"
    return f"code {code}" + (f": {ws.close_reason}" if ws.close_reason else "")


async def place_call(
    url: str,
    token: str,
    wavs: Sequence[Path | str | bytes],
    agent: str = "",
    turn_timeout_s: float = 20.0,
    wait_greeting: bool = True,
    *,
    greeting_timeout_s: float = 10.0,
    ready_timeout_s: float = 10.0,
    hangup_wait_s: float = 0.5,
) -> CallResult:
    """Place one scripted call: each item of `wavs` is one caller turn (a WAV path, or PCM16
    LE mono 16 kHz bytes). Raises CallFailed when the call cannot be placed and
    voicemesh.audio.wav.AudioFormatError for an unusable WAV (before connecting)."""
    utterances = load_utterances(wavs)
    client = CallClient(url, token, agent=agent, ready_timeout_s=ready_timeout_s)
    return await client.run(
        utterances,
        turn_timeout_s=turn_timeout_s,
        wait_greeting=wait_greeting,
        greeting_timeout_s=greeting_timeout_s,
        hangup_wait_s=hangup_wait_s,
    )
