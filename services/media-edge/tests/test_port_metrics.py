"""What the ports measure of the caller's media, fed scripted messages on a virtual clock (a
fake socket stamps each message's arrival): jitter once a second of media, Twilio's holes
as frames lost and the ones filled as frames concealed."""

from __future__ import annotations

import base64
import json
from collections import deque
from typing import Any

import pytest

from voicemesh.edge import twilio_wire as tw
from voicemesh.edge.ingress import SocketClosed, WebSocketIngress
from voicemesh.edge.native import NativePort
from voicemesh.edge.port import CallInfo, Frame, Hangup, PortEvent
from voicemesh.edge.twilio import TwilioPort, TwilioStreamTransport
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.unit

SID = "MZ" + "0" * 32
ULAW_20MS = base64.b64encode(b"\xff" * 160).decode()  # μ-law silence


class ScriptedSocket:
    """Hands out (arrival time, message) pairs in order; `now` is the last arrival."""

    def __init__(self, script: list[tuple[float, str | bytes]]) -> None:
        self._script = deque(script)
        self.now = 0.0

    async def recv(self) -> str | bytes:
        if not self._script:
            raise SocketClosed("closed")
        self.now, message = self._script.popleft()
        return message

    async def send(self, data: str | bytes) -> None:
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


def media(seq: int, timestamp_ms: int) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": SID,
            "media": {
                "track": "inbound",
                "chunk": str(seq - 1),
                "timestamp": str(timestamp_ms),
                "payload": ULAW_20MS,
            },
        }
    )


def twilio_start() -> tw.Start:
    msg = tw.parse_message(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": SID,
                "start": {
                    "accountSid": "AC1",
                    "streamSid": SID,
                    "callSid": "CA1",
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": {},
                },
            }
        )
    )
    assert isinstance(msg, tw.Start)
    return msg


async def drain(port: Any) -> list[PortEvent]:
    events: list[PortEvent] = []
    while not isinstance(event := await port.receive(), Hangup):
        events.append(event)
    return events


async def twilio_call(script: list[tuple[float, str]]) -> tuple[ServiceMetrics, list[PortEvent]]:
    metrics = ServiceMetrics.create("media-edge")
    transport = TwilioStreamTransport(WebSocketIngress("127.0.0.1", 0, metrics), metrics, auth_token="t" * 32)
    ws = ScriptedSocket(script)
    port = TwilioPort(ws, twilio_start(), CallInfo("twilio-stream"), transport, clock=lambda: ws.now)  # type: ignore[arg-type]
    return metrics, await drain(port)


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "media-edge", **labels}) or 0.0


async def test_twilio_holes_are_frames_lost_and_the_filled_ones_concealed() -> None:
    # 2 s of 20 ms messages; 60 ms missing after 0.5 s (filled), 20 ms after 1.5 s (too
    # short to fill: the next audio just follows)
    missing = {25, 26, 27, 75}
    script = [(10.0 + n * 0.02, media(2 + n, n * 20)) for n in range(100) if n not in missing]
    metrics, events = await twilio_call(script)
    assert value(metrics, "voicemesh_media_frames_lost_total", transport="twilio") == 4
    assert value(metrics, "voicemesh_media_frames_concealed_total", transport="twilio") == 3
    assert value(metrics, "voicemesh_dropped_total", what="twilio_media_gap") == 1  # as before
    assert value(metrics, "voicemesh_errors_total", kind="twilio_sequence_gap") == 2  # as before
    # the filled hole keeps media time: as many frames as 99 messages without a hole give
    _, gapless = await twilio_call([(10.0 + n * 0.02, media(2 + n, n * 20)) for n in range(99)])
    assert sum(isinstance(e, Frame) for e in events) == sum(isinstance(e, Frame) for e in gapless)


async def test_twilio_jitter_is_sampled_once_a_second_of_media() -> None:
    # 3.5 s of media; every other message 6 ms late
    script = [(5.0 + n * 0.02 + (0.006 if n % 2 else 0.0), media(2 + n, n * 20)) for n in range(175)]
    metrics, _ = await twilio_call(script)
    assert value(metrics, "voicemesh_media_jitter_seconds_count", transport="twilio") == 3
    # |D| = 6 ms on every message: the estimate climbs towards 6 ms
    assert 0.004 < value(metrics, "voicemesh_media_jitter_seconds_sum", transport="twilio") / 3 < 0.006
    assert value(metrics, "voicemesh_media_jitter_seconds_bucket", transport="twilio", le="0.01") == 3
    assert value(metrics, "voicemesh_media_frames_lost_total", transport="twilio") == 0


async def test_a_steady_twilio_stream_has_no_jitter_loss_or_concealment() -> None:
    script = [(7.0 + n * 0.02, media(2 + n, 40 + n * 20)) for n in range(110)]
    metrics, _ = await twilio_call(script)
    assert value(metrics, "voicemesh_media_jitter_seconds_count", transport="twilio") == 2
    assert value(metrics, "voicemesh_media_jitter_seconds_sum", transport="twilio") == pytest.approx(
        0, abs=1e-9
    )
    assert value(metrics, "voicemesh_media_frames_lost_total", transport="twilio") == 0
    assert value(metrics, "voicemesh_media_frames_concealed_total", transport="twilio") == 0


async def test_native_jitter_runs_on_the_samples_the_caller_sent() -> None:
    # 8 kHz caller, 40 ms messages (640 bytes), 2.4 s; arrivals alternate 4 ms early/late
    metrics = ServiceMetrics.create("media-edge")
    chunk = bytes(640)
    script: list[tuple[float, str | bytes]] = [
        (3.0 + n * 0.04 + (0.004 if n % 2 else -0.004), chunk) for n in range(60)
    ]
    ws = ScriptedSocket(script)
    port = NativePort(ws, CallInfo("native-ws"), 8000, metrics, clock=lambda: ws.now)  # type: ignore[arg-type]
    events = await drain(port)
    assert sum(isinstance(e, Frame) for e in events) >= 115  # 2.4 s of 20 ms frames
    assert value(metrics, "voicemesh_media_jitter_seconds_count", transport="native") == 2
    mean = value(metrics, "voicemesh_media_jitter_seconds_sum", transport="native") / 2
    assert 0.004 < mean < 0.008  # climbing towards |D| = 8 ms
    assert value(metrics, "voicemesh_media_frames_lost_total", transport="native") == 0
