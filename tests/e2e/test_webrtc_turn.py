"""WebRTC through a real TURN server (Debian's coturn, `use-auth-secret`): an edge on ICE
policy "relay" (the way an edge in a Kubernetes pod, whose address callers cannot reach,
serves browsers that have only egress to TURN) minting ephemeral TURN credentials for
itself and for the page, and a caller that does what the page does with the softphone
config. The edges here are extra media-edge processes joined to the shared local mesh (real
stt, reasoning and tts), with the env this test needs; the mesh's own edge is untouched."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from turn import TurnServer
from webrtc_caller import WhipRefused, hang_up, issue_token, page_configuration, place, softphone_config

from voicemesh.cli.localmesh import LocalMesh, ServiceProcess
from voicemesh.mesh.localservers import free_port

from .test_webrtc import loud_after, until, wav_pcm

pytestmark = pytest.mark.e2e

TURN_SECRET = "e2e-turn-rest-secret-5f0c2a9e"
WRONG_SECRET = "not-the-turn-secret-81d3b7aa"
TTL_S = 600


def turn_password(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


class ExtraEdge:
    """A media-edge process of its own (no SIP), joined to `mesh` with extra env."""

    def __init__(self, mesh: LocalMesh, name: str, env: dict[str, str]) -> None:
        [edge] = [s for s in mesh.services if s.name == "media-edge"]
        self.ws_port = free_port()
        full = dict(edge.env)
        full.update(
            {
                "VOICEMESH_INSTANCE_ID": f"media-edge-{name}",
                "VOICEMESH_GRPC_PORT": str(free_port()),
                "VOICEMESH_METRICS_PORT": str(free_port()),
                "VOICEMESH_WS_PORT": str(self.ws_port),
                "VOICEMESH_SIP_ENABLED": "false",
                "VOICEMESH_LOG_FORMAT": "json",
                "VOICEMESH_OTEL_EXPORTER": "none",
                **env,
            }
        )
        self.process = ServiceProcess("media-edge", "voicemesh.edge", full, mesh.home / "logs" / f"media-edge-{name}.log")
        self.mesh = mesh

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        self.process.start()

    async def wait_serving(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while await self.mesh.check_health(self.process) != "SERVING":
            if self.process.exited() is not None:
                raise AssertionError(f"{self.process.instance_id} did not start: {self.process.last_error()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.process.instance_id} not serving after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        proc = self.process.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def logs(self, msg: str) -> list[dict[str, object]]:
        out = []
        for line in self.process.log_lines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("msg") == msg:
                    out.append(record)
        return out

    def log_text(self) -> str:
        return "\n".join(self.process.log_lines())

    async def errors(self, kind: str) -> float:
        url = f"http://127.0.0.1:{self.process.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "voicemesh_errors_total" and sample.labels.get("kind") == kind:
                    return sample.value
        return 0.0


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    with TurnServer.start_in(tmp_path_factory.mktemp("turn"), secret=TURN_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def edges(mesh: LocalMesh, coturn: TurnServer) -> Iterator[tuple[ExtraEdge, ExtraEdge]]:
    """(an edge with the TURN server's secret, one with a wrong secret), both on relay."""
    common = {
        "VOICEMESH_WEBRTC_ICE_SERVERS": coturn.ice_servers_json(),  # no username: minted
        "VOICEMESH_WEBRTC_ICE_POLICY": "relay",
        "VOICEMESH_WEBRTC_TURN_TTL_S": str(TTL_S),
    }
    relay = ExtraEdge(mesh, "relay", {**common, "VOICEMESH_WEBRTC_TURN_SECRET": TURN_SECRET})
    wrong = ExtraEdge(mesh, "wrong-turn", {**common, "VOICEMESH_WEBRTC_TURN_SECRET": WRONG_SECRET})
    try:
        for edge in (relay, wrong):
            edge.start()

        async def serving() -> None:
            await asyncio.gather(relay.wait_serving(), wrong.wait_serving())

        asyncio.run(serving())
        yield relay, wrong
    finally:
        for edge in (relay, wrong):
            edge.stop()


async def test_the_page_is_told_relay_with_turn_credentials_minted_for_it(
    mesh: LocalMesh, coturn: TurnServer, edges: tuple[ExtraEdge, ExtraEdge]
) -> None:
    relay, _ = edges
    async with aiohttp.ClientSession() as http:
        token = await issue_token(http, relay.base, mesh.token, "restaurant")
        before = time.time()
        config = await softphone_config(http, relay.base, token)
    assert config["ice_transport_policy"] == "relay"
    [server] = config["ice_servers"]  # type: ignore[misc]
    assert server["urls"] == [coturn.url]
    expiry, label = server["username"].split(":")
    assert label == "voicemesh-softphone"
    assert before + TTL_S - 1 <= int(expiry) <= time.time() + TTL_S
    assert server["credential"] == turn_password(TURN_SECRET, server["username"])


async def test_a_relayed_call_is_heard_and_answered_through_the_turn_server(
    mesh: LocalMesh, coturn: TurnServer, edges: tuple[ExtraEdge, ExtraEdge]
) -> None:
    relay, _ = edges
    silence = bytes(32000 * 4)  # the greeting plays while the caller waits
    script = silence + wav_pcm("caller_party.wav") + bytes(32000 * 8)
    async with aiohttp.ClientSession() as http:
        token = await issue_token(http, relay.base, mesh.token, "restaurant")
        # the caller does what the page does: the edge's ICE servers and policy (relay too)
        ice = page_configuration(await softphone_config(http, relay.base, token))
        call = await place(http, relay.base, token, "restaurant", script, config=ice)
        try:
            await until(lambda: "ready" in call.kinds(), 20)

            await until(lambda: "table" in call.finals(), 30)
            assert "four" in call.finals()
            spoke_at = await call.track.sent((len(silence) + len(wav_pcm("caller_party.wav"))) // 640)
            await until(lambda: any(r.get("final") and r.get("turn_id") for r in call.of("response")), 30)
            await until(lambda: loud_after(call, spoke_at) > 0.5, 20)  # the reply's audio, back
            assert loud_after(call, 0) > loud_after(call, spoke_at) > 0.5  # greeting, then reply
            assert await hang_up(http, relay.base, token, call) == 200
            await until(lambda: "end" in call.kinds(), 10)
        finally:
            await call.close()
    # the edge's nominated ICE pair: its relay candidate (to the caller's relay, both on coturn)
    [connected] = relay.logs("webrtc media connected")
    assert (connected["ice_local"], connected["ice_remote"]) == ("relay", "relay")
    # coturn allocated for both minted users and carried the media: the edge's allocation,
    # deleted when the call closed, reports the packets relayed both ways
    assert coturn.log_lines(r"user <\d+:voicemesh-edge>: incoming packet ALLOCATE processed, success")
    assert coturn.log_lines(r"user <\d+:voicemesh-softphone>: incoming packet ALLOCATE processed, success")
    assert coturn.log_lines(r"incoming packet CHANNEL_BIND processed, success")

    def edge_usage() -> list[tuple[int, int]]:
        usage = coturn.log_lines(r" usage: realm=<[^>]*>, username=<\d+:voicemesh-edge>, rp=\d+")
        return [
            (int(line.split("rp=")[1].split(",")[0]), int(line.split("sp=")[1].split(",")[0])) for line in usage
        ]

    await until(lambda: any(rp > 100 and sp > 100 for rp, sp in edge_usage()), 15)
    assert TURN_SECRET not in relay.log_text()


async def test_a_wrong_turn_secret_refuses_the_call_and_the_edge_says_why(
    mesh: LocalMesh, edges: tuple[ExtraEdge, ExtraEdge]
) -> None:
    _, wrong = edges
    async with aiohttp.ClientSession() as http:
        token = await issue_token(http, wrong.base, mesh.token, "restaurant")
        ice = page_configuration(await softphone_config(http, wrong.base, token))
        with pytest.raises(WhipRefused) as refused:
            await place(http, wrong.base, token, "restaurant", b"", config=ice)
    assert refused.value.status == 503
    assert "refused the credentials (401" in refused.value.reason
    assert await wrong.errors("webrtc_no_relay") == 1
    [logged] = wrong.logs("webrtc call refused: no relay candidate")
    assert "refused the credentials (401" in str(logged["reason"])
    assert not wrong.logs("webrtc media connected")
    assert WRONG_SECRET not in wrong.log_text() + refused.value.reason


def test_relay_without_a_turn_server_is_refused_at_start_up(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        {
            "VOICEMESH_EDGE_TOKEN": "e" * 32,
            "VOICEMESH_WEBRTC_ICE_POLICY": "relay",
            "VOICEMESH_WEBRTC_ICE_SERVERS": '[{"urls": "stun:127.0.0.1:3478"}]',
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "voicemesh.edge"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2
    assert "VOICEMESH_WEBRTC_ICE_POLICY" in done.stderr and "VOICEMESH_WEBRTC_ICE_SERVERS" in done.stderr
