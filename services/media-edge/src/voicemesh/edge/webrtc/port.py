"""One WebRTC call as a `MediaPort` (aiortc: Opus at 48 kHz over DTLS-SRTP), and its
observer over the data channel the caller opened, named `voicemesh`.

- In: the caller's decoded Opus (48 kHz) becomes gapless 20 ms frames of 16 kHz PCM16; a
  hole in the RTP timestamps (packets lost) is filled with silence and counted.
- Out: frames the call plays go through `OutboundQueue` to aiortc's sender, which pulls
  them (`AgentTrack.recv`); the call paces, the track does not pace again. Timestamps run
  on with the wall clock across the agent's silences (`OutboundTimeline`), so the browser's
  jitter buffer places the next talk spurt right.
- The data channel carries the native protocol's JSON both ways: the observer's messages
  out, `dtmf` and `stop` in (anything else is answered with `error` and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE, Framer
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.v1 import edge_pb2

from ..inbox import PortInbox
from ..native import BadMessage, parse_client_message
from ..observer_wire import JsonObserver, encode
from ..port import (
    CallInfo,
    CallObserver,
    Dtmf,
    EndReason,
    Frame,
    MarkPlayed,
    MediaPort,
    MediaQuality,
    PortEvent,
    Transferred,
)
from ..sip.rtp import InboundGaps, OutboundTimeline
from .outbound import OutboundQueue

log = logging.getLogger(__name__)
LABEL = "webrtc"
OPUS_RATE = 48000
CHANNEL_LABEL = "voicemesh"
INBOUND_QUEUE_FRAMES = 250
EARLY_MESSAGES = 200  # observer messages held until the data channel opens
CLOSE_FLUSH_S = 0.25  # time for the `end` message to leave before the connection closes
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
_FRAME_SAMPLES = FRAME_BYTES // 2


class AgentTrack(MediaStreamTrack):
    """The agent's voice as aiortc pulls it: the next frame the call played, when it is
    played; marks go back to the port as they are passed."""

    kind = "audio"

    def __init__(self, port: WebRtcPort) -> None:
        super().__init__()
        self._port = port

    async def recv(self) -> av.AudioFrame:
        return await self._port.next_outbound()


class WebRtcPort(MediaPort, JsonObserver):
    transport_label = LABEL

    def __init__(
        self,
        pc: RTCPeerConnection,
        info: CallInfo,
        metrics: ServiceMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self.pc = pc
        self._metrics = metrics
        self._clock = clock
        self._inbox = PortInbox(INBOUND_QUEUE_FRAMES)
        self._closed = False
        self._out = OutboundQueue()
        self._out_ready = asyncio.Event()
        self._timeline = OutboundTimeline(0, rate=SAMPLE_RATE)
        self._channel: RTCDataChannel | None = None
        self._early: deque[str] = deque(maxlen=EARLY_MESSAGES)
        self._reader: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.hung_up = self._inbox.hung_up  # the caller is gone (or the connection failed)
        self.channel_open = asyncio.Event()
        self._received = 0  # decoded Opus frames (one per packet)
        self._lost = 0
        self._concealed = 0
        self.track = AgentTrack(self)
        pc.on("connectionstatechange", self._on_state)
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_channel)

    # ---- the connection ------------------------------------------------------------------

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.caller_gone(f"connection {state}")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_caller(track))

    def _on_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL_LABEL or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._channel_opened()
        else:
            channel.on("open", self._channel_opened)

    def _channel_opened(self) -> None:
        self.channel_open.set()
        while self._early:
            self._send_now(self._early.popleft())

    def caller_gone(self, why: str) -> None:
        self._inbox.caller_gone(why)

    def _push(self, event: PortEvent) -> None:
        if not self._inbox.push(event):
            self._metrics.dropped("webrtc_inbound_frames")

    # ---- media in ------------------------------------------------------------------------

    async def _read_caller(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        gaps = InboundGaps(rate=OPUS_RATE)
        framer = Framer(FRAME_BYTES)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            self._received += 1
            pcm = b""
            if frame.pts is not None:
                filled = gaps.audio(int(frame.pts), frame.samples)
                if filled.lost_frames:
                    self._lost += filled.lost_frames
                    self._metrics.frames_lost(LABEL, filled.lost_frames)
                if filled.silence_samples:
                    frames = filled.silence_samples * 50 // OPUS_RATE
                    self._concealed += frames
                    self._metrics.frames_concealed(LABEL, frames)
                    pcm = bytes(filled.silence_samples * SAMPLE_RATE // OPUS_RATE * 2)
            frame.pts = None  # the resampler must not fill holes itself: the gaps rule did
            for out in resampler.resample(frame):
                pcm += out.to_ndarray().tobytes()
            for chunk in framer.push(pcm):
                self._push(Frame(chunk))
        self.caller_gone("the caller's audio ended")

    async def receive(self) -> PortEvent:
        return await self._inbox.next()

    def _on_message(self, message: str | bytes) -> None:
        try:
            if not isinstance(message, str):
                raise BadMessage("data channel messages are JSON text")
            msg = parse_client_message(message)
            kind = msg.WhichOneof("kind")
            if kind == "dtmf":
                self._push(Dtmf(msg.dtmf.digits))
            elif kind == "stop":
                self.caller_gone(msg.stop.reason or "caller hung up")
            else:
                raise BadMessage("the call has already started")
        except BadMessage as exc:
            self._metrics.error("bad_client_message")
            error = edge_pb2.CallError(code="bad_message", message=str(exc))
            self._send_now_or_hold(encode(edge_pb2.ServerMessage(error=error)))

    # ---- media out -----------------------------------------------------------------------

    async def next_outbound(self) -> av.AudioFrame:
        """What aiortc's sender sends next: waits for the call to play a frame."""
        while True:
            pulled = self._out.pull()
            for name in pulled.marks:
                self._push(MarkPlayed(name))
            if pulled.pcm is not None:
                break
            if self._closed:
                raise MediaStreamError
            self._out_ready.clear()
            await self._out_ready.wait()
        stamp = self._timeline.stamp(self._clock())
        samples = np.frombuffer(pulled.pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = stamp.timestamp
        frame.time_base = _TIME_BASE
        return frame

    async def play(self, pcm: bytes) -> None:
        if self._closed:
            return
        dropped = self._out.play(pcm)
        if dropped:  # the sender is not pulling (connection stalled): keep the newest audio
            self._metrics.dropped("webrtc_outbound_frames", dropped)
        self._out_ready.set()

    async def mark(self, name: str) -> bool:
        return self._out.mark(name)

    async def clear(self) -> None:
        for name in self._out.clear():
            self._push(MarkPlayed(name))

    async def transfer(self, target: str) -> Transferred:
        await self.send_message(transfer=edge_pb2.CallTransfer(target=target))
        return Transferred("webrtc-data-channel")

    async def send_dtmf(self, digits: str) -> None:
        await self.send_message(dtmf=edge_pb2.SendDigits(digits=digits))

    async def close(self, reason: EndReason, message: str = "") -> None:
        if self._closed:
            return
        await self.send_message(end=edge_pb2.CallEnd(reason=reason.value))
        self._closed = True
        self._out_ready.set()
        if self.channel_open.is_set():
            await asyncio.sleep(CLOSE_FLUSH_S)  # SCTP sends on its own task: let `end` leave
        await cancel_and_wait(self._reader)
        with contextlib.suppress(Exception):
            await self.pc.close()

    def observer(self) -> CallObserver:
        return self

    def quality(self) -> MediaQuality | None:
        """From the decoded stream (jitter and RTT from getStats() are not folded in yet)."""
        return MediaQuality(
            packets_received=self._received,
            packets_lost=self._lost,
            jitter_ms=0.0,
            concealed_frames=self._concealed,
        )

    # ---- the data channel ----------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        if not self._closed:
            self._send_now_or_hold(text)

    def _send_now_or_hold(self, text: str) -> None:
        if self.channel_open.is_set():
            self._send_now(text)
        else:
            self._early.append(text)

    def _send_now(self, text: str) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        try:
            channel.send(text)
        except Exception:  # a closing channel: the observer is best effort
            self._metrics.dropped("webrtc_observer_messages")
