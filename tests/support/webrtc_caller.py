"""A WebRTC caller (aiortc: ICE, DTLS-SRTP, Opus, the `voicemesh` data channel) that
places a WHIP call on an edge, says a script of PCM in real time, and records what it hears
and what it is shown. A real peer for tests and benches where a browser is not needed."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

RATE = 16000
FRAME_BYTES = 640


class ScriptTrack(MediaStreamTrack):
    """The caller's microphone: `pcm` (16 kHz PCM16), 20 ms at a time in real time, then
    silence. `sent_at[i]` is when frame i left."""

    kind = "audio"

    def __init__(self, pcm: bytes) -> None:
        super().__init__()
        self._pcm = pcm
        self._n = 0
        self._start: float | None = None
        self.sent_at: list[float] = []
        self._sent = asyncio.Event()

    async def sent(self, frame: int, limit_s: float = 30.0) -> float:
        """When frame `frame` left, once it has (an agent may answer before the caller's
        script has run out: its turn can end in the script's own trailing silence)."""
        async with asyncio.timeout(limit_s):
            while len(self.sent_at) <= frame:
                self._sent.clear()
                await self._sent.wait()
        return self.sent_at[frame]

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - loop.time()))
        chunk = self._pcm[self._n * FRAME_BYTES : (self._n + 1) * FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        samples = np.frombuffer(chunk, np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._n * 320, fractions.Fraction(1, RATE)
        self._n += 1
        self.sent_at.append(time.monotonic())
        self._sent.set()
        return frame


@dataclass
class WebRtcCall:
    pc: RTCPeerConnection
    location: str
    track: ScriptTrack
    messages: list[dict[str, object]] = field(default_factory=list)
    heard: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival, 16 kHz PCM)
    reader: asyncio.Task[None] | None = None

    def kinds(self) -> list[str]:
        return [next(iter(m)) for m in self.messages]

    def of(self, kind: str) -> list[dict[str, object]]:
        return [m[kind] for m in self.messages if kind in m]  # type: ignore[misc]

    def finals(self) -> str:
        """The caller's final transcripts so far, joined, lower case."""
        return " ".join(str(t["text"]) for t in self.of("transcript") if t.get("final")).lower()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        await self.pc.close()


class WhipRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


async def issue_token(http: aiohttp.ClientSession, base: str, edge_token: str, agent: str = "") -> str:
    async with http.post(
        f"{base}/v1/tokens", json={"agent": agent}, headers={"Authorization": f"Bearer {edge_token}"}
    ) as resp:
        if resp.status != 201:
            raise WhipRefused(resp.status, await resp.text())
        return str((await resp.json())["token"])


async def softphone_config(http: aiohttp.ClientSession, base: str, token: str) -> dict[str, object]:
    """What the page is told: agents, ICE servers (TURN credentials minted for it), policy."""
    async with http.get(f"{base}/v1/softphone/config", headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status != 200:
            raise WhipRefused(resp.status, await resp.text())
        return await resp.json()  # type: ignore[no-any-return]


def page_configuration(config: dict[str, object]) -> RTCConfiguration:
    """The RTCConfiguration a page builds from the softphone config: its ICE servers and
    its ICE transport policy ("all" if the edge names none)."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in config.get("ice_servers", [])  # type: ignore[union-attr]
    ]
    policy = RTCIceTransportPolicy(config.get("ice_transport_policy", "all"))
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


async def place(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    agent: str,
    pcm: bytes,
    config: RTCConfiguration | None = None,
) -> WebRtcCall:
    """The call, once the edge answered and its audio track arrived. `config`: the caller's
    ICE (None: aiortc's default, a public STUN server; `RTCConfiguration(iceServers=[])`:
    host candidates only)."""
    pc = RTCPeerConnection(config)
    track = ScriptTrack(pcm)
    call = WebRtcCall(pc, "", track)
    channel = pc.createDataChannel("voicemesh")
    channel.on("message", lambda m: call.messages.append(json.loads(m)))
    pc.addTrack(track)
    remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    pc.on("track", lambda t: remote.done() or remote.set_result(t))
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(
        f"{base}/v1/whip?agent={agent}",
        data=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    ) as resp:
        if resp.status != 201:
            await pc.close()
            raise WhipRefused(resp.status, (await resp.text()).strip())
        call.location = resp.headers["Location"]
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    agent_track = await asyncio.wait_for(remote, 10)

    async def read() -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        while True:
            try:
                frame = await agent_track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            for out in resampler.resample(frame):
                call.heard.append((now, out.to_ndarray().tobytes()))

    call.reader = asyncio.create_task(read())
    return call


async def hang_up(http: aiohttp.ClientSession, base: str, token: str, call: WebRtcCall) -> int:
    async with http.delete(base + call.location, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status
