"""Place a call on a Twilio Media Streams endpoint the way Twilio would: the asyncio shell
around TwilioCarrier (carrier.py).

Used by `voicemesh call --twilio`, benchmarks and tests:

    result = await place_twilio_call("ws://127.0.0.1:8080/v1/twilio", token, [Path("q.wav")])
    print(result.turns[0].voice_to_voice_ms, result.sids.call_sid)

The WebSocket upgrade carries `X-Twilio-Signature` (HMAC-SHA1 of the stream URL with the
auth token, as Twilio signs it). Two tasks move bytes: a ticker (the carrier's 20 ms tick on
the monotonic clock, drift-free: tick i is due at start + i * 20 ms) and a reader. Every
decision is the carrier's. When the server ends the stream and `action_url` is given, the
`<Connect action>` GET follows, signed over the full URL, and its TwiML lands in the result.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voicemesh.edge.twilio_signature import compute_signature
from voicemesh.mesh.aio import cancel_and_wait

from .callscript import FRAME_S
from .carrier import TwilioCarrier
from .carrier_types import ActionResponse, EndedBy, TwilioCallResult, parse_server_message
from .wsclient import CallFailed, load_utterances

Clock = Callable[[], float]
SIGNATURE_HEADER = "X-Twilio-Signature"
USER_AGENT = "Twilio.TmeWs/1.0"  # what Twilio's media-stream client calls itself
ACTION_TIMEOUT_S = 10.0


class StreamRefused(CallFailed):
    """The endpoint answered the WebSocket upgrade with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def sign(auth_token: str, url: str) -> dict[str, str]:
    """The signature header Twilio would send for `url`; none without an auth token."""
    return {SIGNATURE_HEADER: compute_signature(auth_token, url)} if auth_token else {}


async def place_twilio_call(
    url: str,
    auth_token: str,
    wavs: Sequence[Path | str | bytes],
    *,
    custom_parameters: Mapping[str, str] | None = None,
    signed_url: str | None = None,
    action_url: str | None = None,
    dtmf: Mapping[int, str] | None = None,
    barge_in: Mapping[int, int] | None = None,
    turn_timeout_s: float = 30.0,
    greeting_timeout_s: float = 15.0,
    hangup_wait_s: float = 2.0,
    open_timeout_s: float = 10.0,
) -> TwilioCallResult:
    """Place one call as Twilio would: each item of `wavs` is one caller utterance (a WAV
    path, or PCM16 LE mono 16 kHz bytes). `signed_url` is the URL the signature covers (the
    `<Stream url>` as written in the TwiML; default `url`). `dtmf[i]`: digits pressed after
    utterance i; `barge_in[i]`: start utterance i that many ms after the previous reply began
    to play. Raises CallFailed (StreamRefused for an HTTP status) when the stream cannot be
    opened, voicemesh.audio.wav.AudioFormatError for an unusable WAV (before connecting)."""
    carrier = TwilioCarrier(
        load_utterances(wavs),
        custom_parameters=custom_parameters,
        dtmf=dtmf,
        barge_in=barge_in,
        turn_timeout_s=turn_timeout_s,
        greeting_timeout_s=greeting_timeout_s,
        hangup_wait_s=hangup_wait_s,
    )
    ws = await _open(url, sign(auth_token, signed_url or url), open_timeout_s)
    try:
        await _stream(ws, carrier, time.monotonic)
    finally:
        await ws.close()
    result = carrier.result()
    if action_url and result.ended_by is EndedBy.SERVER:  # Twilio runs the TwiML after <Connect>
        request_url = carrier.action_request_url(action_url)
        try:
            result.action = await asyncio.to_thread(_get, request_url, sign(auth_token, request_url))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            result.action_error = f"GET {action_url} failed: {getattr(exc, 'reason', exc)}"
    return result


async def _open(url: str, headers: dict[str, str], open_timeout_s: float) -> ClientConnection:
    try:
        return await connect(
            url,
            additional_headers=headers,
            user_agent_header=USER_AGENT,
            open_timeout=open_timeout_s,
            close_timeout=2.0,
            compression=None,
            proxy=None,
            max_size=2**20,
        )
    except InvalidURI:
        raise CallFailed(f"{url} is not a ws:// or wss:// URL") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            line = f"the Twilio endpoint at {url} refused the stream (HTTP {status}): bad X-Twilio-Signature"
            line += " (is the auth token right?)" if headers else " (no auth token given to sign with)"
        else:
            line = (
                f"the Twilio endpoint at {url} answered HTTP {status} instead of a stream (is the URL right?)"
            )
        raise StreamRefused(line, status) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        line = f"no Twilio endpoint at {url} (is `voicemesh up` running?)"
        if not isinstance(exc, ConnectionRefusedError):
            line += f": {exc.__class__.__name__}" + (f": {exc}" if str(exc) else "")
        raise CallFailed(line) from None


async def _stream(ws: ClientConnection, carrier: TwilioCarrier, clock: Clock) -> None:
    """Tick until the carrier is done (it hung up, or the server closed and the buffer played)."""
    lock = asyncio.Lock()  # one writer at a time keeps sequenceNumbers in order on the wire

    async def send(messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        async with lock:
            try:
                for message in messages:
                    await ws.send(json.dumps(message, separators=(",", ":")))
            except ConnectionClosed:
                carrier.on_closed(clock(), *_close_detail(ws))

    next_tick = clock()
    await send(carrier.tick(next_tick))  # connected, start, the first media
    reader = asyncio.create_task(_read(ws, carrier, clock, send), name="twilio-reader")
    try:
        while not carrier.done:
            next_tick += FRAME_S
            delay = next_tick - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await send(carrier.tick(clock()))
            if reader.done() and not reader.cancelled() and (exc := reader.exception()) is not None:
                raise exc
    finally:
        await cancel_and_wait(reader)


async def _read(
    ws: ClientConnection,
    carrier: TwilioCarrier,
    clock: Clock,
    send: Callable[[list[dict[str, Any]]], Any],
) -> None:
    try:
        async for raw in ws:
            now = clock()
            try:
                message = parse_server_message(raw)
            except ValueError as exc:
                carrier.on_problem(f"malformed message from the server: {exc}")
                continue
            await send(carrier.on_message(message, now))
    except ConnectionClosed:
        pass
    carrier.on_closed(clock(), *_close_detail(ws))


def _close_detail(ws: ClientConnection) -> tuple[int | None, str]:
    return ws.close_code, ws.close_reason or ""


def _get(url: str, headers: dict[str, str]) -> ActionResponse:
    """The action request, blocking (run it in a thread). No proxies: the endpoint is direct."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "TwilioProxy/1.1", **headers})
    try:
        with opener.open(request, timeout=ACTION_TIMEOUT_S) as response:
            body = response.read().decode("utf-8", "replace")
            return ActionResponse(response.status, body, response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:  # an HTTP answer all the same: report it
        body = exc.read().decode("utf-8", "replace")
        return ActionResponse(exc.code, body, exc.headers.get("Content-Type", "") if exc.headers else "")
