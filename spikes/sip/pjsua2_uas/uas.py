"""Smallest PJSUA2 UAS for the SIP stack spike (issue 7). Not production code.

asyncio runs in the main thread (which also called libCreate, so it is registered with
pjlib). PJSIP's own worker thread (uaConfig.threadCnt=1) and its media clock thread run
the callbacks; each callback only hands its event to the loop with call_soon_threadsafe,
except the media callbacks, which must fill/consume a frame synchronously.

Events are printed as JSON lines on stdout. Per call WAVs go to --out.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import audioop  # deprecated in 3.11, gone in 3.13: fine for a spike
import json
import os
import re
import sys
import threading
import time
import wave

import pjsua2 as pj

ULAW = open(os.path.join(os.path.dirname(__file__), "..", "sipp", "jfk8k.ulaw"), "rb").read()
PCM8K = audioop.ulaw2lin(ULAW, 2)  # what we send back: 8 kHz PCM16, 320 bytes per 20 ms
FRAME = 320
NOCOPY = bool(os.environ.get("PJ_NOCOPY"))  # experiment: no per-frame byte copies
SILENCE_BV = pj.ByteVector(b"\0" * FRAME)
SLOWCOPY = bool(os.environ.get("PJ_SLOWCOPY"))  # experiment: the documented bytes(frame.buf) path


def bv_bytes(bv) -> bytes:
    """Copy a SWIG ByteVector (std::vector<uint8_t>) in one memcpy: reads libstdc++'s begin pointer.
    ~5 us instead of ~240 us for bytes(bv), which makes 320 SWIG calls, each releasing the GIL."""
    begin = ctypes.c_void_p.from_address(int(bv.this)).value
    return ctypes.string_at(begin, bv.size()) if begin else b""

loop: asyncio.AbstractEventLoop
calls: dict[int, "UasCall"] = {}
stats = {"calls": 0, "confirmed": 0, "disconnected": 0}


def emit(**ev):
    ev["t"] = round(time.monotonic(), 3)
    print(json.dumps(ev), flush=True)


def on_loop(fn, *a):
    loop.call_soon_threadsafe(fn, *a)


class Port(pj.AudioMediaPort):
    """Python end of the conference bridge: 20 ms PCM16 frames in and out."""

    def __init__(self, call_id: int):
        super().__init__()
        self.call_id = call_id
        self.rx = bytearray()
        self.rx_frames = 0
        self.tx_frames = 0
        self.pos = 0
        self.threads = set()

    def onFrameReceived(self, frame):  # media clock thread
        self.threads.add(threading.current_thread().name)
        self.rx_frames += 1
        if NOCOPY:
            return
        if SLOWCOPY:
            self.rx += bytes(frame.buf)  # ByteVector -> bytes: 320 SWIG calls, each drops+retakes the GIL
        else:
            self.rx += bv_bytes(frame.buf)

    def onFrameRequested(self, frame):  # media clock thread
        self.tx_frames += 1
        chunk = PCM8K[self.pos:self.pos + FRAME]
        self.pos += FRAME
        if len(chunk) < FRAME:
            chunk = chunk + b"\0" * (FRAME - len(chunk))
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = SILENCE_BV if NOCOPY else pj.ByteVector(chunk)
        frame.size = FRAME


class UasCall(pj.Call):
    def __init__(self, acc, call_id):
        super().__init__(acc, call_id)
        self.cid = call_id
        self.port: Port | None = None
        self.hangup_after = None

    def onCallState(self, prm):  # pjsip worker thread
        ci = self.getInfo()
        on_loop(call_state, self, ci.stateText, ci.lastStatusCode, ci.lastReason)

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE and os.environ.get("PJ_NOPORT"):
                emit(ev="media", call=self.cid, note="PJ_NOPORT: no Python frames (CPU baseline)")
            elif mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE and self.port is None:
                am = self.getAudioMedia(i)
                p = Port(self.cid)
                fmt = pj.MediaFormatAudio()
                fmt.init(pj.PJMEDIA_FORMAT_PCM, 8000, 1, 20000, 16)
                p.createPort(f"py{self.cid}", fmt)
                am.startTransmit(p)
                p.startTransmit(am)
                self.port = p
                si = self.getStreamInfo(i)
                emit(ev="media", call=self.cid, codec=si.codecName, remote=si.remoteRtpAddress,
                     srtp=str(self.getMedTransportInfo(i).srcRtpName), dir=mi.dir)
            elif mi.type == pj.PJMEDIA_TYPE_AUDIO:
                emit(ev="media_state", call=self.cid, status=mi.status, dir=mi.dir)

    def onDtmfDigit(self, prm):
        on_loop(emit_dtmf, self.cid, prm.digit, prm.method)


def emit_dtmf(cid, digit, method):
    emit(ev="dtmf", call=cid, digit=digit, method=method)


def call_state(call: UasCall, state, code, reason):
    emit(ev="state", call=call.cid, state=state, code=code, reason=reason)
    if state == "CONFIRMED":
        stats["confirmed"] += 1
        if call.hangup_after:
            loop.call_later(call.hangup_after, hangup, call)
        loop.call_later(5, stream_stat, call)
    if state == "DISCONNECTED":
        stats["disconnected"] += 1
        p = call.port
        if p is not None:
            path = os.path.join(ARGS.out, f"call{call.cid}_{int(time.time()*1000)}.wav")
            with wave.open(path, "wb") as w:
                w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(p.rx))
            emit(ev="ended", call=call.cid, rx_frames=p.rx_frames, tx_frames=p.tx_frames,
                 heard_s=round(len(p.rx) / 16000, 2), rms=audioop.rms(bytes(p.rx), 2), wav=path,
                 media_threads=sorted(p.threads))
        calls.pop(call.cid, None)


def stream_stat(call: UasCall):
    """PJMEDIA's jitter buffer and RTCP figures, 5 s into the call (per-call metrics come from here)."""
    try:
        st = call.getStreamStat(0)
    except pj.Error:
        return
    jb, rx = st.jbuf, st.rtcp.rxStat
    emit(ev="stream_stat", call=call.cid, jb_avg_delay_ms=jb.avgDelayMsec, jb_max_delay_ms=jb.maxDelayMsec,
         jb_prefetch=jb.prefetch, jb_min_prefetch=jb.minPrefetch, jb_max_prefetch=jb.maxPrefetch, jb_size=jb.size,
         jb_lost=jb.lost, jb_discard=jb.discard, jb_empty=jb.empty, rx_pkt=rx.pkt, rx_loss=rx.loss, rx_dup=rx.dup,
         rx_reorder=rx.reorder, rx_jitter_us_mean=rx.jitterUsec.mean, rtt_us_mean=st.rtcp.rttUsec.mean)


def hangup(call: UasCall):
    op = pj.CallOpParam(); op.statusCode = 200
    try:
        call.hangup(op)  # sends BYE
        emit(ev="uas_bye", call=call.cid)
    except pj.Error as e:
        emit(ev="error", where="hangup", msg=e.info())


def answer(call: UasCall, code: int):
    op = pj.CallOpParam(); op.statusCode = code
    try:
        call.answer(op)
    except pj.Error as e:
        emit(ev="error", where="answer", msg=e.info())


class Acc(pj.Account):
    def onIncomingCall(self, prm):  # pjsip worker thread; must create the Call here
        c = UasCall(self, prm.callId)
        msg = prm.rdata.wholeMsg
        m = re.search(r"^X-Hangup-After:\s*(\d+)", msg, re.M | re.I)
        c.hangup_after = int(m.group(1)) if m else None
        m = re.search(r"^X-Answer-Delay:\s*(\d+)", msg, re.M | re.I)
        delay = int(m.group(1)) if m else 0
        calls[prm.callId] = c
        stats["calls"] += 1
        on_loop(incoming, c, delay, threading.current_thread().name)
        # Answer 180 from here (synchronously: the INVITE transaction is ours now)
        answer(c, 180)


def incoming(call, delay, thread):
    emit(ev="incoming", call=call.cid, thread=thread, delay=delay)
    loop.call_later(delay, answer, call, 200)


class Log(pj.LogWriter):
    def write(self, entry):
        if ARGS.pjlog:
            sys.stderr.write(entry.msg)


async def main():
    global loop
    loop = asyncio.get_running_loop()
    ep = pj.Endpoint()
    # libCreate logs at level 5 to fd 1 before any EpConfig applies: silence it at fd level
    saved = os.dup(1); devnull = os.open(os.devnull, os.O_WRONLY); os.dup2(devnull, 1)
    try:
        ep.libCreate()
    finally:
        os.dup2(saved, 1); os.close(saved); os.close(devnull)
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 1          # one pjsip worker thread polls the ioqueue
    cfg.uaConfig.maxCalls = int(os.environ.get("PJ_MAX_CALLS", "32"))  # default is 4 (!); PJSUA_MAX_CALLS compiled in = 32; 64 silently stays 4
    cfg.uaConfig.userAgent = "voicemesh-spike-pjsua2"
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.audioFramePtime = 20
    cfg.medConfig.ptime = 20
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    cfg.medConfig.threadCnt = 1
    cfg.logConfig.level = 5 if ARGS.pjlog else 0
    cfg.logConfig.consoleLevel = 5 if ARGS.pjlog else 0
    cfg.logConfig.msgLogging = 1 if ARGS.pjlog else 0
    global LOGW
    LOGW = Log()
    cfg.logConfig.writer = LOGW
    cfg.logConfig.decor = 0
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()     # no sound card: the null device clocks the bridge

    # only G.711 + telephone-event
    for c in ep.codecEnum2():
        keep = c.codecId.split("/")[0] in ("PCMU", "PCMA")
        ep.codecSetPriority(c.codecId, 200 if c.codecId.startswith("PCMU") else (150 if keep else 0))

    tc = pj.TransportConfig(); tc.port = ARGS.port; tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    tc2 = pj.TransportConfig(); tc2.port = ARGS.port; tc2.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tc2)
    if ARGS.cert:
        tt = pj.TransportConfig(); tt.port = ARGS.tls_port; tt.boundAddress = "127.0.0.1"
        tt.tlsConfig.certFile = ARGS.cert
        tt.tlsConfig.privKeyFile = ARGS.key
        tt.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tt)
    ep.libStart()

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:agent@127.0.0.1:{ARGS.port}"
    acfg.mediaConfig.transportConfig.port = ARGS.rtp_port
    acfg.mediaConfig.transportConfig.portRange = 2000
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.srtpUse = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                                "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[ARGS.srtp]
    acfg.mediaConfig.srtpSecureSignaling = 0  # allow SDES over plain UDP too (spike)
    acfg.natConfig.sdpNatRewriteUse = 0
    acc = Acc(); acc.create(acfg, True)
    emit(ev="ready", version=ep.libVersion().full, port=ARGS.port, pid=os.getpid(),
         threads=[t.name for t in threading.enumerate()], native_threads=len(os.listdir("/proc/self/task")))
    if ARGS.busy_ms:  # simulate a busy asyncio loop: pure-Python work in N ms slices (holds the GIL)
        async def busy():
            while True:
                t = time.perf_counter()
                while time.perf_counter() - t < ARGS.busy_ms / 1000:
                    pass
                await asyncio.sleep(0)
        asyncio.get_running_loop().create_task(busy())
    if ARGS.dial:  # outbound call (UAC): INVITE, media 3 s (Python port plays jfk), BYE
        oc = UasCall(acc, pj.PJSUA_INVALID_ID)
        oc.hangup_after = 3
        op = pj.CallOpParam(True)
        oc.makeCall(ARGS.dial, op)
        oc.cid = oc.getId(); calls[oc.cid] = oc
        emit(ev="dial", call=oc.cid, uri=ARGS.dial)
    stop = asyncio.Event()
    for s in ("SIGTERM", "SIGINT"):
        import signal
        loop.add_signal_handler(getattr(signal, s), stop.set)
    await stop.wait()
    emit(ev="stopping", **stats)
    ep.hangupAllCalls()
    await asyncio.sleep(0.3)
    ep.libDestroy()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5070)
    ap.add_argument("--tls-port", type=int, default=5071)
    ap.add_argument("--rtp-port", type=int, default=40000)
    ap.add_argument("--srtp", default="optional", choices=["off", "optional", "mandatory"])
    ap.add_argument("--cert"); ap.add_argument("--key")
    ap.add_argument("--dial")
    ap.add_argument("--busy-ms", type=float, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "out", "pjsua2"))
    ap.add_argument("--pjlog", action="store_true")
    ARGS = ap.parse_args()
    os.makedirs(ARGS.out, exist_ok=True)
    asyncio.run(main())
