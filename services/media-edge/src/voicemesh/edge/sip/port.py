"""One SIP call as a `MediaPort`: its dialog (aiosipua's `IncomingCall`) and its RTP stream
(aiortp's `RTPSession`; the caller's audio goes through our adaptive jitter buffer,
`jitter.py`, which the port reads on its own 20 ms clock).

The call rings (180) when the INVITE arrives and is answered (200 with the SDP answer) when
the call takes its first event, that is once the mesh has reserved its stt, reasoning and
tts: a call the mesh cannot take is refused with a final response (486, 503, 404) instead
of being answered and hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiortp
from aiosipua import IncomingCall
from aiosipua.sdp import parse_sdp

from voicemesh.audio.frames import FRAME_BYTES, SAMPLE_RATE, Framer
from voicemesh.audio.g711 import alaw_encode, ulaw_encode
from voicemesh.audio.resample import StreamResampler
from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.metrics import ServiceMetrics

from ..inbox import PortInbox
from ..port import (
    DTMF_DIGITS,
    CallInfo,
    Dtmf,
    EndReason,
    Frame,
    Hold,
    MediaPort,
    MediaQuality,
    PortEvent,
    QualityReport,
    Transferred,
)
from .jitter import JitterBuffer, Pulled, Unbuffered
from .offer import G711, Answer, SdpRejected
from .rtp import DTMF_GAP_MS, FRAME_SAMPLES, RATE, InboundGaps, OutboundTimeline, dtmf_packets, round_trip_s
from .srtp import SrtpContext, new_key_salt

log = logging.getLogger(__name__)
LABEL = "sip"
BIND_TRIES = 8
INBOUND_QUEUE_FRAMES = 250
# While the jitter buffer has nothing to give (a caller suppressing its silence, a dead
# line), the port supplies silence on its 20 ms clock, so the call still hears the turn
# end, for at most this long after the last packet; then nothing, and the call's media
# timeout ends a call whose caller has gone.
SUPPLY_FOR_S = 2.0
ACCOUNT_EVERY = 50  # ticks between the jitter buffer's figures going to the metrics (1 s)
_ENCODE = {G711.PCMU: ulaw_encode, G711.PCMA: alaw_encode}
# The final response for a call refused before it was answered.
_REFUSAL = {
    EndReason.UNAVAILABLE: (503, "Service Unavailable"),
    EndReason.NO_CAPACITY: (486, "Busy Here"),
    EndReason.UNKNOWN_AGENT: (404, "Not Found"),
    EndReason.NO_MEDIA: (408, "Request Timeout"),
}


class SipSignalling(Protocol):
    """What a port needs from its transport (the UAS it arrived on)."""

    metrics: ServiceMetrics
    host: str  # where RTP binds
    advertised_host: str  # what the SDP names
    jitter_ms: tuple[int, int]  # the jitter buffer's depth bounds

    def answer(self, body: str, rtp_port: int, key_salt: bytes) -> Answer: ...
    def bind_port(self) -> int: ...
    def release_port(self, port: int) -> None: ...
    def hang_up(self, call: IncomingCall) -> None: ...
    def respond(self, call: IncomingCall, status: int, reason: str, sdp: str = "") -> None: ...
    def forget(self, port: SipPort) -> None: ...
    async def refer(self, call: IncomingCall, target: str) -> str: ...


@dataclass
class _Rtp:
    session: Any  # aiortp.RTPSession
    codec: G711
    timeline: OutboundTimeline


class SipPort(MediaPort):
    transport_label = LABEL

    def __init__(
        self,
        call: IncomingCall,
        answer: Answer,
        rtp_port: int,
        info: CallInfo,
        signalling: SipSignalling,
        clock: Callable[[], float],
    ) -> None:
        self.info = info
        self.call = call
        self._answer_sdp = answer
        self._rtp_port: int | None = rtp_port
        self._sig = signalling
        self._metrics = signalling.metrics
        self._clock = clock
        self._inbox = PortInbox(INBOUND_QUEUE_FRAMES)
        self._rtp: _Rtp | None = None
        self._answered = False
        self._closed = False
        self._held = answer.direction.held
        self._gaps = InboundGaps()
        self._inbound = StreamResampler(RATE, SAMPLE_RATE)
        self._framer = Framer(FRAME_BYTES)
        self._outbound = StreamResampler(SAMPLE_RATE, RATE)
        self._out_framer = Framer(FRAME_SAMPLES * 2)
        self._buffer = self._new_buffer(answer.codec)
        self._counted = self._buffer.counts()  # what the metrics have had of its counters
        self._last_packet = clock()  # a DTMF event, or the call's start
        self._clock_task: asyncio.Task[None] | None = None
        self._supplied_frames = 0  # silence this port made up (holes, a quiet line)
        self._rtt_s: float | None = None
        self._remote: tuple[float, float] | None = None  # (fraction lost, jitter ms) reported
        self._lost_counted = 0
        self._srtp: SrtpContext | None = None

    def _new_buffer(self, codec: G711) -> JitterBuffer:
        low, high = self._sig.jitter_ms
        return JitterBuffer(aiortp.get_codec(codec.payload_type), min_ms=low, max_ms=high, now=self._clock)

    # ---- signalling, from the transport ------------------------------------------------

    def caller_gone(self, why: str) -> None:
        """BYE, CANCEL or an unanswered 200: the caller's side of the call is over."""
        self._inbox.caller_gone(why)

    def reoffer(self, call: IncomingCall) -> None:
        """A re-INVITE: hold, resume or a new codec, answered on the same RTP port."""
        assert self._rtp_port is not None
        body = call.invite.text if call.invite.body else ""
        try:
            answer = self._sig.answer(body, self._rtp_port, self._answer_sdp.key_salt or new_key_salt())
        except SdpRejected as exc:
            self._metrics.error("sip_bad_reoffer")
            self._sig.respond(call, exc.status, exc.reason)
            return
        self._answer_sdp = answer
        if answer.crypto is not None and answer.key_salt is not None:  # the caller may re-key
            self._srtp = SrtpContext(remote=answer.crypto, local_key_salt=answer.key_salt)
        rtp = self._rtp
        if rtp is not None and answer.codec is not rtp.codec:
            rtp.session._payload_type = answer.codec.payload_type  # (aiortp 0.8.0)
            rtp.session._codec = aiortp.get_codec(answer.codec.payload_type)
            rtp.session._sender._payload_type = answer.codec.payload_type
            rtp.codec = answer.codec
            self._account()
            self._buffer = rtp.session._playout = self._new_buffer(answer.codec)
            self._counted = self._buffer.counts()
        if rtp is not None and answer.remote[0] not in ("0.0.0.0", "::"):
            rtp.session.update_remote(answer.remote)
        self._sig.respond(call, 200, "OK", answer.sdp)
        if answer.direction.held != self._held:
            self._held = answer.direction.held
            self._push(Hold(self._held))

    # ---- media in ----------------------------------------------------------------------

    def _push(self, event: PortEvent) -> None:
        self._inbox.push(event)

    @property
    def _gone(self) -> str | None:
        return self._inbox.gone

    def _heard(self, pulled: Pulled) -> None:
        """20 ms of the caller's audio out of the jitter buffer, on the port's clock."""
        if pulled.delay_s is not None:
            self._metrics.observe_buffer_delay(LABEL, pulled.delay_s)
        filled = self._gaps.audio(pulled.timestamp, len(pulled.pcm) // 2)
        pcm = pulled.pcm
        if filled.silence_samples:  # a hole the buffer did not conceal (a timestamp skip)
            self._supplied_frames += filled.silence_samples // FRAME_SAMPLES
            self._metrics.frames_concealed(LABEL, filled.silence_samples // FRAME_SAMPLES)
            pcm = bytes(filled.silence_samples * 2) + pcm
        self._frames_in(pcm)

    def _frames_in(self, pcm8k: bytes) -> None:
        for frame in self._framer.push(self._inbound.process(pcm8k)):
            if not self._inbox.push(Frame(frame)):
                self._metrics.dropped("sip_inbound_frames")

    def _on_dtmf(self, digit: str, _duration: int) -> None:
        self._last_packet = self._clock()
        if digit in DTMF_DIGITS:
            self._push(Dtmf(digit))
        else:  # an RFC 4733 event that is no key (a tone, a flash): not the call's to hear
            self._metrics.dropped("sip_dtmf_not_a_key")

    def _guarded(self, deliver: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        """What aiortp does with a packet, with what it fails on (a malformed
        telephone-event, say) dropped and counted instead of raised into the event loop."""

        def guarded(data: bytes, addr: Any) -> None:
            try:
                deliver(data, addr)
            except ValueError:
                self._metrics.dropped("bad_rtp")

        return guarded

    def _quiet_s(self) -> float:
        """How long since the caller last sent anything (audio, a key, comfort noise)."""
        arrived = self._buffer.last_arrival_s
        return self._clock() - max(self._last_packet, arrived if arrived is not None else self._last_packet)

    async def _caller_clock(self) -> None:
        """Every 20 ms: the next 20 ms of the caller's audio from the jitter buffer, else
        (nothing buffered: a pause, a quiet line) silence, for SUPPLY_FOR_S."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        silence = bytes(FRAME_SAMPLES * 2)
        ticks = 0
        while True:
            due += FRAME_SAMPLES / RATE
            await asyncio.sleep(max(0.0, due - loop.time()))
            pulled = self._buffer.pull()
            if pulled is not None:
                self._heard(pulled)
            elif not self._held and self._quiet_s() <= SUPPLY_FOR_S:
                self._gaps.supplied(FRAME_SAMPLES)
                self._supplied_frames += 1
                self._metrics.frames_concealed(LABEL, 1)
                self._frames_in(silence)
            ticks += 1
            if ticks % ACCOUNT_EVERY == 0:
                self._account()
            if loop.time() - due > 1.0:  # the loop stalled: do not catch up in a burst
                due = loop.time()

    def _account(self) -> None:
        """The jitter buffer's counters and the stream's loss since the last time, and the
        buffer's depth now, to the metrics."""
        if self._rtp is not None:
            self._fold_loss(self._rtp.session.stats)
        now = self._buffer.counts()
        was, self._counted = self._counted, now
        self._metrics.frames_late(LABEL, now.late - was.late)
        self._metrics.frames_concealed(LABEL, now.concealed - was.concealed)
        if now.duplicates > was.duplicates:
            self._metrics.dropped("rtp_duplicate", now.duplicates - was.duplicates)
        jitter = self._buffer.jitter_sample()
        if jitter is not None:
            self._metrics.observe_jitter(LABEL, jitter)
        if self._buffer.last_arrival_s is not None and self._quiet_s() < 1.0:
            self._metrics.observe_buffer_depth(LABEL, now.depth_ms / 1000)

    async def _answer(self) -> None:
        """200 OK with the answer, and RTP flowing both ways."""
        await self._start_media(rebind=True)
        self.call.accept(parse_sdp(self._answer_sdp.sdp))
        self._answered = True

    async def connected(self) -> None:
        """A call we placed was answered (`call` is its dialog, `answer` from the callee's
        SDP): RTP flows on the port our offer named."""
        await self._start_media(rebind=False)
        self._answered = True

    async def _start_media(self, *, rebind: bool) -> None:
        """RTP both ways, symmetric: replies go to where the caller's packets come from, for
        callers behind NAT."""
        session = None
        for _ in range(BIND_TRIES):
            answer = self._answer_sdp
            assert self._rtp_port is not None
            try:
                session = await aiortp.RTPSession.create(
                    local_addr=(self._sig.host, self._rtp_port),
                    remote_addr=answer.remote,
                    payload_type=answer.codec.payload_type,
                    dtmf_payload_type=answer.dtmf_payload_type or 101,
                    jitter_prefetch=0,
                    plc=False,  # ours conceals
                    symmetric_rtp=True,
                )
                break
            except OSError:  # another process holds the port: take the next, answer anew
                self._metrics.error("sip_rtp_port_busy")
                if not rebind:  # our offer named this port already
                    raise
                busy, self._rtp_port = self._rtp_port, self._sig.bind_port()
                self._sig.release_port(busy)  # after taking the next, so it is not handed back
                body = self.call.invite.text if self.call.invite.body else ""
                self._answer_sdp = self._sig.answer(body, self._rtp_port, answer.key_salt or new_key_salt())
        if session is None:
            raise OSError(f"no free RTP port after {BIND_TRIES} tries")
        for wire in (session._rtp_transport, session._rtcp_transport):  # (aiortp 0.8.0)
            wire._on_rtp = self._guarded(wire._on_rtp)
            wire._on_rtcp = self._guarded(wire._on_rtcp)
        if answer.crypto is not None and answer.key_salt is not None:
            self._srtp = SrtpContext(remote=answer.crypto, local_key_salt=answer.key_salt)
            self._secure(session)
        session._jitter_buffer = Unbuffered()  # (aiortp 0.8.0) each packet straight to ours
        session._playout = self._buffer
        session.on_dtmf = self._on_dtmf
        session.on_receiver_report = self._on_receiver_report
        self._last_packet = self._clock()
        self._clock_task = asyncio.get_running_loop().create_task(self._caller_clock())
        self._rtp = _Rtp(session, answer.codec, OutboundTimeline(secrets.randbits(32)))

    def _on_receiver_report(self, report: Any) -> None:
        """The caller's RTCP told how our packets fared: the round trip, its loss and jitter."""
        self._rtt_s = round_trip_s(aiortp.clock.current_ntp_time(), report.lsr, report.dlsr) or self._rtt_s
        self._remote = (report.fraction_lost / 256, report.jitter / (RATE / 1000))
        quality = self.quality()
        if quality is not None:
            self._push(QualityReport(quality))

    def quality(self) -> MediaQuality | None:
        rtp = self._rtp
        if rtp is None:
            return None
        stats = rtp.session.stats
        lost = self._fold_loss(stats)
        concealed = self._buffer.counts().concealed
        return MediaQuality(
            packets_received=int(stats.get("packets_received", 0)),
            packets_lost=lost,
            jitter_ms=int(stats.get("jitter", 0)) / (RATE / 1000),
            concealed_frames=concealed + self._supplied_frames,
            rtt_ms=None if self._rtt_s is None else self._rtt_s * 1000,
            remote_fraction_lost=None if self._remote is None else self._remote[0],
            remote_jitter_ms=None if self._remote is None else self._remote[1],
        )

    def _fold_loss(self, stats: dict[str, Any]) -> int:
        """RFC 3550's cumulative loss (packets expected by sequence number less those
        received), and what it grew by since the last time to voicemesh_media_frames_lost_total."""
        lost = max(0, int(stats.get("packets_lost", 0)))
        if lost > self._lost_counted:
            self._metrics.frames_lost(LABEL, lost - self._lost_counted)
            self._lost_counted = lost
        return lost

    def _secure(self, session: Any) -> None:
        """SDES-SRTP under aiortp (0.8.0): every datagram of the call goes through libsrtp on
        its way in (what fails authentication or replays is dropped and counted) and out."""
        for wire in (session._rtp_transport, session._rtcp_transport):
            wire._on_rtp = self._unprotect(wire._on_rtp, rtcp=False)
            wire._on_rtcp = self._unprotect(wire._on_rtcp, rtcp=True)
        send_rtp, send_rtcp = session._rtp_transport.send, session._rtcp_transport.send
        session._rtp_transport.send = lambda data, addr=None: send_rtp(self._protect(data, rtcp=False), addr)
        session._rtcp_transport.send = lambda data, addr=None: send_rtcp(self._protect(data, rtcp=True), addr)

    def _protect(self, packet: bytes, *, rtcp: bool) -> bytes:
        assert self._srtp is not None
        return self._srtp.protect_rtcp(packet) if rtcp else self._srtp.protect(packet)

    def _unprotect(self, deliver: Callable[[bytes, Any], None], *, rtcp: bool) -> Callable[[bytes, Any], None]:
        def unprotected(data: bytes, addr: Any) -> None:
            assert self._srtp is not None
            clear = self._srtp.unprotect_rtcp(data) if rtcp else self._srtp.unprotect(data)
            if clear is None:
                self._metrics.dropped("srtcp_unauthentic" if rtcp else "srtp_unauthentic")
                return
            deliver(clear, addr)

        return unprotected

    @property
    def encrypted(self) -> bool:
        return self._srtp is not None

    async def receive(self) -> PortEvent:
        if not self._answered and self._gone is None:
            await self._answer()
        return await self._inbox.next()

    # ---- media out ---------------------------------------------------------------------

    async def play(self, pcm: bytes) -> None:
        rtp = self._rtp
        if rtp is None or self._closed or self._held:  # on hold we answered recvonly/inactive
            return
        out = self._outbound.process(pcm)
        for chunk in self._out_framer.push(out) if out else ():
            stamp = rtp.timeline.stamp(self._clock())
            sender = rtp.session._sender  # (aiortp 0.8.0: the marker bit is only there)
            sender.send_frame(
                _ENCODE[rtp.codec](chunk), stamp.timestamp, int(stamp.marker), rtp.session._remote_addr
            )

    async def mark(self, name: str) -> bool:
        return True  # RTP is paced by the edge and buffered nowhere: what was sent has played

    async def clear(self) -> None:
        return None  # nothing is buffered at the far end

    async def transfer(self, target: str) -> Transferred:
        """A blind transfer (RFC 3515): REFER the caller to `target`; the call's BYE follows."""
        if not self._answered or self._gone is not None:
            return Transferred("sip-refer", "not sent: the call is not up")
        return Transferred("sip-refer", await self._sig.refer(self.call, target))

    async def send_dtmf(self, digits: str) -> None:
        """Keys to the far end as RFC 4733 telephone-events, paced in real time, under the
        payload type the caller's offer gave them."""
        rtp = self._rtp
        pt = self._answer_sdp.dtmf_payload_type
        if rtp is None or self._closed:
            return
        if pt is None:  # the caller offered no telephone-event: it cannot take keys this way
            self._metrics.error("dtmf_unsupported")
            log.warning("the caller's offer has no telephone-event", extra={"call": self.info.carrier_call_id})
            return
        loop = asyncio.get_running_loop()
        for key in digits:
            start = loop.time()
            timestamp = rtp.timeline.stamp(self._clock()).timestamp
            for packet in dtmf_packets(key):
                await asyncio.sleep(max(0.0, start + packet.at_s - loop.time()))
                rtp.session._sender.send_raw(pt, packet.payload, timestamp, int(packet.marker), rtp.session._remote_addr)
            await asyncio.sleep(DTMF_GAP_MS / 1000)

    async def close(self, reason: EndReason, message: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self._answered:
                if self._gone is None:  # refused before it was answered: a final response
                    status, phrase = _REFUSAL.get(reason, (500, "Server Internal Error"))
                    self._sig.respond(self.call, status, phrase)
            elif self._gone is None:
                self._sig.hang_up(self.call)  # BYE, retransmitted over UDP until answered
        except RuntimeError:  # the caller's TCP/TLS connection is gone: nothing carries it
            self._metrics.error("sip_unsent")
        finally:  # whatever happened on the wire, the call's port and place are given back
            if self._clock_task is not None:
                await cancel_and_wait(self._clock_task)
                self._account()
            if self._rtp is not None:
                with contextlib.suppress(Exception):
                    await self._rtp.session.close()
            if self._rtp_port is not None:
                self._sig.release_port(self._rtp_port)
                self._rtp_port = None
            self._sig.forget(self)
