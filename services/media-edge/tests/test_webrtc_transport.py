"""WebRTC calls through the WHIP endpoint on a real HTTP port, with a real WebRTC peer
(aiortc as the caller: ICE on loopback, DTLS-SRTP, Opus, an SCTP data channel). The call
behind the port is a small scripted one (it says a tone, then listens): what the mesh does
with a WebRTC call end to end is in tests/e2e/test_webrtc.py with a real browser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from turn import TurnServer
from webrtc_caller import WebRtcCall, WhipRefused, place

from voicemesh.edge.ingress import WebSocketIngress
from voicemesh.edge.port import EndReason, Frame, Hangup, MarkPlayed, MediaPort
from voicemesh.edge.tokens import CallTokens
from voicemesh.edge.webrtc.agents import AgentChoice
from voicemesh.edge.webrtc.ice import IceConfig, IcePolicy, parse_ice_servers, turn_credential
from voicemesh.edge.webrtc.transport import WebRtcTransport, selected_pair
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.integration

SECRET = "s" * 40
RATE = 16000


def tone(hz: float, seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16).tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


@dataclass
class ScriptedCall:
    """Says a 440 Hz tone for a second with a mark after it, and records what it hears."""

    heard: list[bytes] = field(default_factory=list)
    events: list[object] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    port: MediaPort | None = None

    async def __call__(self, port: MediaPort) -> None:
        self.port = port
        self.started.set()
        observer = port.observer()
        assert observer is not None
        await observer.ready("session-1", port.info.agent)
        await observer.transcript("t1", "hello there", True)

        async def speak() -> None:
            pcm = tone(440, 1.0)
            for i in range(0, len(pcm), 640):
                await port.play(pcm[i : i + 640])
                await asyncio.sleep(0.02)
            if await port.mark("end:r1"):
                self.events.append(MarkPlayed("end:r1"))

        speaking = asyncio.create_task(speak())
        try:
            while True:
                event = await port.receive()
                if isinstance(event, Frame):
                    self.heard.append(event.pcm)
                    continue
                self.events.append(event)
                if isinstance(event, Hangup):
                    break
        finally:
            speaking.cancel()
            await port.close(EndReason.CALLER)
            self.ended.set()


@dataclass
class Edge:
    url: str
    tokens: CallTokens
    call: ScriptedCall
    metrics: ServiceMetrics


@contextlib.asynccontextmanager
async def running_edge(
    ice: IceConfig | None = None, clock: Callable[[], float] = time.time
) -> AsyncIterator[Edge]:
    metrics = ServiceMetrics.create("media-edge")
    ingress = WebSocketIngress("127.0.0.1", 0, metrics)
    tokens = CallTokens(SECRET)
    transport = WebRtcTransport(
        ingress,
        metrics,
        tokens=tokens,
        edge_token="e" * 32,
        token_ttl_s=60,
        ice=ice,
        agents=[AgentChoice("restaurant", "Restaurant"), AgentChoice("clinic", "Clinic")],
        clock=clock,
    )
    call = ScriptedCall()
    await transport.start(call)
    await ingress.start()
    try:
        yield Edge(f"http://127.0.0.1:{ingress.port}", tokens, call, metrics)
    finally:
        await ingress.stop()


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async with running_edge() as running:
        yield running


async def place_call(http: aiohttp.ClientSession, edge: Edge, token: str, agent: str = "restaurant") -> WebRtcCall:
    return await place(http, edge.url, token, agent, tone(300, 30))  # the caller says a 300 Hz tone


async def until(check, limit_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(limit_s):
        while not check():
            await asyncio.sleep(0.02)


async def test_a_call_hears_both_ways_and_shows_the_call_on_the_data_channel(edge: Edge) -> None:
    async with aiohttp.ClientSession() as http:
        caller = await place_call(http, edge, fresh(edge), "clinic")
        await asyncio.wait_for(edge.call.started.wait(), 15)
        assert edge.call.port is not None and edge.call.port.info.agent == "clinic"
        # the agent's tone reaches the caller, decoded from Opus
        await until(lambda: sum(len(p) for _, p in caller.heard) > RATE * 2 * 0.8)
        agent_audio = b"".join(p for _, p in caller.heard)
        loud = [agent_audio[i : i + 640] for i in range(0, len(agent_audio) - 640, 640)]
        loud = [f for f in loud if np.abs(np.frombuffer(f, np.int16)).max() > 1000]
        assert abs(dominant_hz(b"".join(loud[:25]), RATE) - 440) < 15
        # the caller's tone reaches the call as 16 kHz frames
        await until(lambda: len(edge.call.heard) >= 50)
        assert abs(dominant_hz(b"".join(edge.call.heard[10:60]), RATE) - 300) < 15
        # the mark after the agent's audio is played once the audio has gone out
        await until(lambda: MarkPlayed("end:r1") in edge.call.events)
        # the observer's messages arrived, in the native protocol's JSON
        await until(lambda: len(caller.messages) >= 2)
        assert caller.messages[0]["ready"]["session_id"] == "session-1"  # type: ignore[index]
        assert caller.messages[1]["transcript"]["text"] == "hello there"  # type: ignore[index]
        # DELETE on the resource hangs up: the call hears a Hangup, the caller an `end`
        async with http.delete(edge.url + caller.location, headers=_bearer(edge)) as resp:
            assert resp.status == 200
        await asyncio.wait_for(edge.call.ended.wait(), 5)
        assert Hangup("caller hung up") in edge.call.events
        await until(lambda: any("end" in m for m in caller.messages), 5)
        async with http.delete(edge.url + caller.location, headers=_bearer(edge)) as resp:
            assert resp.status == 404  # that call is over
        await caller.close()


def fresh(edge: Edge, agent: str = "") -> str:
    return edge.tokens.issue(time.time(), 60, agent)


def _bearer(edge: Edge) -> dict[str, str]:
    return {"Authorization": f"Bearer {fresh(edge)}"}


async def _post(http: aiohttp.ClientSession, url: str, body: str, **headers: str) -> tuple[int, str]:
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_an_offer_without_a_good_token_is_refused_with_the_reason(edge: Edge) -> None:
    offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    url = f"{edge.url}/v1/whip?agent=restaurant"
    async with aiohttp.ClientSession() as http:
        status, text = await _post(http, url, offer, **{"Content-Type": "application/sdp"})
        assert status == 401 and "token is required" in text
        expired = edge.tokens.issue(time.time() - 100, 10)
        status, text = await _post(http, url, offer, Authorization=f"Bearer {expired}")
        assert status == 401 and "expired" in text
        forged = CallTokens("x" * 40).issue(time.time(), 60)
        status, text = await _post(http, url + f"&token={forged}", offer)
        assert status == 401 and "signature" in text
        bound = fresh(edge, "clinic")
        status, text = await _post(
            http, url, offer, Authorization=f"Bearer {bound}", **{"Content-Type": "application/sdp"}
        )
        assert status == 403 and "clinic" in text
    assert edge.call.port is None  # no call was started by any of them


async def test_a_bad_offer_is_refused_and_the_next_call_still_works(edge: Edge) -> None:
    token = fresh(edge)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{edge.url}/v1/whip"
    async with aiohttp.ClientSession() as http:
        status, text = await _post(http, url, "v=0\r\n", **auth, **{"Content-Type": "text/plain"})
        assert status == 415
        status, text = await _post(http, url, "v=0\r\nm=video 9 RTP/AVP 96\r\n", **auth, **{"Content-Type": "application/sdp"})
        assert status == 400 and "no audio" in text
        garbage = "v=0\r\nm=audio nonsense\r\na=ice-ufrag:\r\n"
        status, text = await _post(http, url, garbage, **auth, **{"Content-Type": "application/sdp"})
        assert status == 400 and "cannot be answered" in text
        status, text = await _post(http, url + "?agent=nobody", garbage, **auth, **{"Content-Type": "application/sdp"})
        assert status == 404 and "restaurant, clinic" in text
        caller = await place_call(http, edge, token)
        await asyncio.wait_for(edge.call.started.wait(), 15)
        await until(lambda: len(edge.call.heard) >= 10)
        await caller.close()
        await asyncio.wait_for(edge.call.ended.wait(), 10)  # the closed connection ends the call
    labels = {"service": "media-edge", "kind": "webrtc_bad_offer"}
    assert edge.metrics.registry.get_sample_value("voicemesh_errors_total", labels) == 2


async def test_an_offer_hiding_its_addresses_behind_mdns_names_is_refused_saying_so(edge: Edge) -> None:
    # a browser that has not captured audio offers only <uuid>.local names (Firefox does):
    # the edge cannot resolve them, and used to answer 201 with no candidates, a call that
    # could never connect
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("voicemesh")
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers before it returns
    offer = pc.localDescription.sdp
    await pc.close()
    hidden = re.sub(r"(a=candidate:\S+ \d+ \S+ \d+ )(\S+)", r"\g<1>4f1c2a7e-9b1d-4c3e-8f00-5a6b7c8d9e0f.local", offer)
    assert hidden != offer
    headers = {"Authorization": f"Bearer {fresh(edge)}", "Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as http:
        status, text = await _post(http, f"{edge.url}/v1/whip", hidden, **headers)
    assert status == 400 and "mDNS" in text, (status, text)
    labels = {"service": "media-edge", "kind": "webrtc_bad_offer"}
    assert edge.metrics.registry.get_sample_value("voicemesh_errors_total", labels) == 1


async def test_the_softphone_config_and_a_token_from_the_edge_api(edge: Edge) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{edge.url}/v1/tokens", json={"agent": "clinic", "ttl_s": 30}) as resp:
            assert resp.status == 401  # the edge's API token is needed to mint one
        async with http.post(
            f"{edge.url}/v1/tokens", json={"agent": "clinic", "ttl_s": 30}, headers={"Authorization": "Bearer " + "e" * 32}
        ) as resp:
            assert resp.status == 201
            token = (await resp.json())["token"]
        async with http.get(f"{edge.url}/v1/softphone/config?token={token}") as resp:
            assert resp.status == 200
            config = await resp.json()
        assert [a["id"] for a in config["agents"]] == ["restaurant", "clinic"]
        assert config["default_agent"] == "restaurant" and config["ice_servers"] == []
        assert config["ice_transport_policy"] == "all"


TURN_SECRET = "t" * 32
TURN_JSON = '[{"urls": ["turn:turn.example.net:3478?transport=udp"]}, {"urls": "stun:stun.example.net"}]'


async def test_a_relay_edge_tells_the_page_its_policy_with_credentials_minted_per_answer() -> None:
    now = [1_700_000_000.0]
    ice = IceConfig(tuple(parse_ice_servers(TURN_JSON)), IcePolicy.RELAY, TURN_SECRET, 900)
    async with running_edge(ice, clock=lambda: now[0]) as relay_edge, aiohttp.ClientSession() as http:
        token = relay_edge.tokens.issue(now[0], 600)

        async def config() -> dict[str, object]:
            async with http.get(f"{relay_edge.url}/v1/softphone/config?token={token}") as resp:
                assert resp.status == 200
                return await resp.json()  # type: ignore[no-any-return]

        first = await config()
        assert first["ice_transport_policy"] == "relay"
        turn, stun = first["ice_servers"]  # type: ignore[misc]
        assert turn["urls"] == ["turn:turn.example.net:3478?transport=udp"]
        assert turn["username"] == "1700000900:voicemesh-softphone"
        assert turn["credential"] == turn_credential(TURN_SECRET, turn["username"])
        assert stun == {"urls": ["stun:stun.example.net"]}
        now[0] += 60  # a page loaded a minute later gets its own, later-expiring credentials
        later = (await config())["ice_servers"][0]  # type: ignore[index]
        assert later["username"] == "1700000960:voicemesh-softphone" and later["credential"] != turn["credential"]
        assert TURN_SECRET not in str(first) + str(later)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[TurnServer]:
    with TurnServer.start_in(tmp_path / "turn", secret=TURN_SECRET) as server:
        yield server


def relay_ice(server: TurnServer, secret: str) -> IceConfig:
    return IceConfig(tuple(parse_ice_servers(server.ice_servers_json())), IcePolicy.RELAY, secret, 600)


async def test_a_relay_edge_carries_the_call_through_a_real_turn_server(coturn: TurnServer) -> None:
    async with running_edge(relay_ice(coturn, TURN_SECRET)) as relay_edge, aiohttp.ClientSession() as http:
        # the caller offers only host candidates: the edge reaches them from its TURN relay
        caller = await place(
            http, relay_edge.url, fresh(relay_edge), "restaurant", tone(300, 30), config=RTCConfiguration(iceServers=[])
        )
        try:
            await asyncio.wait_for(relay_edge.call.started.wait(), 15)
            assert relay_edge.call.port is not None
            assert selected_pair(relay_edge.call.port.pc) == ("relay", "host")  # type: ignore[attr-defined]
            await until(lambda: len(relay_edge.call.heard) >= 50)  # the caller's tone, relayed
            assert abs(dominant_hz(b"".join(relay_edge.call.heard[10:50]), RATE) - 300) < 15
            await until(lambda: sum(len(p) for _, p in caller.heard) > RATE * 2 * 0.8)  # the agent's, back
        finally:
            await caller.close()
    # coturn granted the edge's minted user an allocation and carried channel data
    assert coturn.log_lines(r"user <\d+:voicemesh-edge>: incoming packet ALLOCATE processed, success")
    assert coturn.log_lines(r"incoming packet CHANNEL_BIND processed, success")


async def test_a_wrong_turn_secret_refuses_the_call_at_once_saying_why(coturn: TurnServer) -> None:
    wrong = "w" * 32
    async with running_edge(relay_ice(coturn, wrong)) as relay_edge, aiohttp.ClientSession() as http:
        with pytest.raises(WhipRefused) as refused:
            await place(http, relay_edge.url, fresh(relay_edge), "restaurant", b"", config=RTCConfiguration(iceServers=[]))
        assert refused.value.status == 503
        assert re.search(r"TURN server 127\.0\.0\.1:\d+ refused the credentials \(401", refused.value.reason)
        assert wrong not in refused.value.reason
        labels = {"service": "media-edge", "kind": "webrtc_no_relay"}
        assert relay_edge.metrics.registry.get_sample_value("voicemesh_errors_total", labels) == 1
        assert relay_edge.call.port is None  # no call was started
