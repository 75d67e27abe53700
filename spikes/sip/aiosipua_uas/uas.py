"""Smallest aiosipua (+ aiortp for RTP, + pylibsrtp for SRTP) UAS for the SIP stack spike (issue 7).

Everything runs in one asyncio loop: SIP (aiosipua), RTP/RTCP/jitter buffer/DTMF (aiortp), our
20 ms sender paced by loop.time() (monotonic), and SDES-SRTP glued in here over pylibsrtp.
Not production code. Events are JSON lines on stdout; per call WAVs go to --out.
"""
from __future__ import annotations

import argparse
import asyncio
import audioop  # deprecated in 3.11, gone in 3.13: fine for a spike
import base64
import json
import os
import ssl
import time
import wave

import pylibsrtp
from aiosipua import IncomingCall, SdpNegotiationError, SipUAS
from aiosipua.rtp_bridge import CallSession
from aiosipua.transport import TcpSipTransport, UdpSipTransport

HERE = os.path.dirname(os.path.abspath(__file__))
PCM8K = audioop.ulaw2lin(open(os.path.join(HERE, "..", "sipp", "jfk8k.ulaw"), "rb").read(), 2)
FRAME = 320  # 20 ms of 8 kHz PCM16
SUITE = "AES_CM_128_HMAC_SHA1_80"


def emit(**ev):
    ev["t"] = round(time.monotonic(), 3)
    print(json.dumps(ev), flush=True)


class Call:
    def __init__(self, ic: IncomingCall, uas: SipUAS, port: int):
        self.ic, self.uas, self.port = ic, uas, port
        self.rx = bytearray(); self.rx_frames = 0; self.tx_frames = 0
        self.session: CallSession | None = None
        self.sender: asyncio.Task | None = None
        self.srtp = False
        self.ended = False

    # ---- SDES SRTP over pylibsrtp: wrap aiortp's UDP protocol objects (ours to maintain) ----
    def enable_srtp(self, remote_inline: str, local_key: bytes):
        rk = base64.b64decode(remote_inline.split("|")[0])
        rx = pylibsrtp.Session(policy=pylibsrtp.Policy(key=rk, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                                        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
        tx = pylibsrtp.Session(policy=pylibsrtp.Policy(key=local_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                                        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
        rs = self.session.rtp_session
        for tp, is_rtcp in ((rs._rtp_transport, False), (rs._rtcp_transport, True)):
            orig_send, orig_recv = tp.send, tp.datagram_received
            prot = tx.protect_rtcp if is_rtcp else tx.protect
            unprot = rx.unprotect_rtcp if is_rtcp else rx.unprotect
            tp.send = (lambda data, addr=None, _s=orig_send, _p=prot: _s(_p(data), addr))

            def recv(data, addr, _r=orig_recv, _u=unprot, _c=self):
                try:
                    data = _u(data)
                except pylibsrtp.Error:
                    _c.srtp_drops = getattr(_c, "srtp_drops", 0) + 1
                    return
                _r(data, addr)
            tp.datagram_received = recv
        self.srtp = True

    def on_audio(self, pcm: bytes, ts: int):
        self.rx_frames += 1
        self.rx += pcm

    async def send_loop(self):
        """20 ms frames from Python, paced by the loop's monotonic clock (absolute deadlines)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time(); pos = 0; ts = 0
        late_ms = []
        while True:
            chunk = PCM8K[pos:pos + FRAME]; pos += FRAME
            if len(chunk) < FRAME:
                chunk = chunk + b"\0" * (FRAME - len(chunk))
            self.session.send_audio_pcm(chunk, ts)
            self.tx_frames += 1; ts += 160
            deadline = t0 + self.tx_frames * 0.020
            late_ms.append(max(0.0, (loop.time() - (deadline - 0.020)) * 1000))
            self.late = late_ms
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def end(self, why: str):
        if self.ended:
            return
        self.ended = True
        if self.sender:
            self.sender.cancel()
        stats = {}
        if self.session:
            try:
                stats = self.session.stats
            except Exception as e:  # noqa: BLE001
                stats = {"err": repr(e)}
            await self.session.close()
        path = os.path.join(ARGS.out, f"call_{self.port}_{int(time.time()*1000)}.wav")
        with wave.open(path, "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(self.rx))
        late = sorted(getattr(self, "late", [0]))
        emit(ev="ended", call=self.ic.call_id, why=why, rx_frames=self.rx_frames, tx_frames=self.tx_frames,
             heard_s=round(len(self.rx) / 16000, 2), rms=audioop.rms(bytes(self.rx), 2) if self.rx else 0,
             wav=path, srtp=self.srtp, srtp_drops=getattr(self, "srtp_drops", 0),
             tx_wakeup_late_ms_p99=round(late[int(len(late) * .99)], 2), rtp_stats=str(stats)[:300])
        PORTS.append(self.port)


CALLS: dict[str, Call] = {}
PORTS: list[int] = []


async def handle_invite(ic: IncomingCall, uas: SipUAS):
    hdr = {k.lower(): v for k, v in ic.x_headers.items()}
    emit(ev="incoming", call=ic.call_id, caller=ic.caller)
    if ic.sdp_offer is None or ic.sdp_offer.audio is None:
        ic.reject(488); emit(ev="rejected", call=ic.call_id, code=488, why="no sdp"); return
    offer_audio = ic.sdp_offer.audio
    savp = offer_audio.proto.upper() == "RTP/SAVP"
    cryptos = [c for c in offer_audio.attributes.get("crypto", []) if SUITE in c]
    if ARGS.srtp == "mandatory" and not (savp and cryptos):
        ic.reject(488); emit(ev="rejected", call=ic.call_id, code=488, why="srtp required"); return
    if savp and not cryptos:
        ic.reject(488); emit(ev="rejected", call=ic.call_id, code=488, why="no usable crypto"); return
    port = PORTS.pop(0)
    try:
        session = CallSession(local_ip="127.0.0.1", rtp_port=port, offer=ic.sdp_offer,
                              supported_codecs=[0, 8], symmetric_rtp=True)
    except SdpNegotiationError as e:
        PORTS.append(port)
        ic.reject(488); emit(ev="rejected", call=ic.call_id, code=488, why=str(e)[:120]); return
    c = Call(ic, uas, port); c.session = session; CALLS[ic.call_id] = c
    local_key = None
    if savp:
        tag, suite, inline = cryptos[0].split()[:3]
        local_key = os.urandom(30)
        session.sdp_answer.audio.attributes["crypto"] = [
            f"{tag} {suite} inline:{base64.b64encode(local_key).decode()}"]
    ic.ringing()
    delay = int(hdr.get("x-answer-delay", "0"))
    if delay:
        await asyncio.sleep(delay)
        if ic.call_id not in uas.active_calls:  # CANCELled meanwhile
            PORTS.append(port); CALLS.pop(ic.call_id, None); return
    await session.start()
    if savp:
        c.enable_srtp(cryptos[0].split()[2][len("inline:"):], local_key)
    session.on_audio = c.on_audio
    session.on_dtmf = lambda d, dur: emit(ev="dtmf", call=ic.call_id, digit=d, duration=dur)
    ic.accept(session.sdp_answer)
    emit(ev="media", call=ic.call_id, codec=session.chosen_payload_type, remote=list(session.remote_addr),
         srtp=savp, transport=type(uas.transport).__name__)
    c.sender = asyncio.get_running_loop().create_task(c.send_loop())
    n = hdr.get("x-hangup-after")
    if n:
        async def later():
            await asyncio.sleep(int(n))
            if not c.ended:
                ic.hangup(); emit(ev="uas_bye", call=ic.call_id); await c.end("uas_bye")
        asyncio.get_running_loop().create_task(later())


def make_uas(transport) -> SipUAS:
    uas = SipUAS(transport)
    uas.user_agent = "voicemesh-spike-aiosipua"
    loop = asyncio.get_running_loop()
    uas.on_invite = lambda ic: loop.create_task(handle_invite(ic, uas))

    def on_bye(ic, req):
        c = CALLS.pop(ic.call_id, None)
        if c:
            loop.create_task(c.end("caller_bye"))
    uas.on_bye = on_bye
    uas.on_cancel = lambda req, addr: emit(ev="cancelled", call=req.call_id)

    def on_reinvite(ic):
        d = ic.sdp_offer.audio.direction if ic.sdp_offer and ic.sdp_offer.audio else None
        c = CALLS.get(ic.call_id)
        emit(ev="reinvite", call=ic.call_id, direction=d)
        if c and c.session:
            from aiosipua import negotiate_sdp
            ans, _ = negotiate_sdp(offer=ic.sdp_offer, local_ip="127.0.0.1", rtp_port=c.port, supported_codecs=[0, 8])
            ic.accept(ans)
    uas.on_reinvite = on_reinvite
    return uas


async def main():
    PORTS.extend(range(ARGS.rtp_port, ARGS.rtp_port + 400, 2))
    transports = [UdpSipTransport(local_addr=("127.0.0.1", ARGS.port)),
                  TcpSipTransport(local_addr=("127.0.0.1", ARGS.port))]
    if ARGS.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)

        class TlsSipTransport(TcpSipTransport):  # aiosipua has no TLS transport: ours (10 lines)
            async def start(self):
                self._server = await asyncio.start_server(self._handle_connection, host=self.local_addr[0],
                                                          port=self.local_addr[1], ssl=ctx)

            def send_reply(self, response):
                # aiosipua 0.7.1 writes Contact: <sip:host:port> with no transport param, so the
                # peer sends ACK/BYE over UDP to the TLS port. Rewrite it (ours to maintain).
                if response.headers.get_first("contact"):
                    h, p = self.local_addr
                    response.headers.set_single("Contact", f"<sip:agent@{h}:{p};transport=tls>")
                super().send_reply(response)
        transports.append(TlsSipTransport(local_addr=("127.0.0.1", ARGS.tls_port)))
    uases = [make_uas(t) for t in transports]
    for u in uases:
        await u.start()
    emit(ev="ready", pid=os.getpid(), port=ARGS.port, transports=[type(t).__name__ for t in transports])
    if ARGS.busy_ms:  # simulate a busy asyncio loop: pure-Python work in N ms slices (holds the GIL)
        async def busy():
            while True:
                t = time.perf_counter()
                while time.perf_counter() - t < ARGS.busy_ms / 1000:
                    pass
                await asyncio.sleep(0)
        asyncio.get_running_loop().create_task(busy())
    if ARGS.dial:  # outbound call (UAC): INVITE, media 3 s, BYE
        from aiosipua import SipUAC, build_sdp
        import aiortp
        uas0 = uases[0]; uac = SipUAC(uas0.transport); uas0.uac = uac
        port = PORTS.pop(0)
        host, _, rport = ARGS.dial.split("@")[1].partition(":")
        oc = uac.send_invite(f"sip:agent@127.0.0.1:{ARGS.port}", ARGS.dial, (host, int(rport or 5060)),
                             sdp_offer=build_sdp(local_ip="127.0.0.1", rtp_port=port, payload_type=0, codec_name="PCMU"))
        await oc.wait_answered(timeout=10)
        emit(ev="dial_answered", remote=oc.sdp_answer.rtp_address if oc.sdp_answer else None)
        rs = await aiortp.RTPSession.create(local_addr=("127.0.0.1", port), remote_addr=oc.sdp_answer.rtp_address, payload_type=0)
        for i in range(150):
            rs.send_audio_pcm(PCM8K[i * FRAME:(i + 1) * FRAME], i * 160); await asyncio.sleep(0.02)
        oc.hangup(uac); emit(ev="dial_bye"); await rs.close()
    stop = asyncio.Event()
    import signal
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    await stop.wait()
    for c in list(CALLS.values()):
        await c.end("shutdown")
    emit(ev="stopping")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5070)
    ap.add_argument("--tls-port", type=int, default=5071)
    ap.add_argument("--rtp-port", type=int, default=40000)
    ap.add_argument("--srtp", default="optional", choices=["off", "optional", "mandatory"])
    ap.add_argument("--cert"); ap.add_argument("--key")
    ap.add_argument("--dial")
    ap.add_argument("--busy-ms", type=float, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "out", "aiosipua"))
    ARGS = ap.parse_args()
    os.makedirs(ARGS.out, exist_ok=True)
    asyncio.run(main())
