"""SIGTERM to the edge with a call live: new callers are told `unavailable` (not refused at
TCP), the live call goes on through the drain, and past the drain timeout it gets a proper
`end` and a normal close instead of a dropped socket (close 1011)."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from voicemesh.cli.localmesh import LocalMesh, MeshPorts
from voicemesh.cli.wsclient import decode

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DRAIN_TIMEOUT_S = 4.0


@pytest.fixture
def own_mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    """A mesh of its own: this test stops its edge."""
    agents = tmp_path / "agents"
    shutil.copytree(REPO / "agents", agents)
    mesh = LocalMesh(
        tmp_path / "mesh",
        agents,
        MeshPorts.free(),
        default_agent="restaurant",
        extra_env={"VOICEMESH_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)},
    )
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


async def _first_reply(ws: websockets.ClientConnection) -> tuple[str, str]:
    """(kind, detail) of what a new caller hears first that decides the call's fate."""
    while True:
        raw = await ws.recv()
        if isinstance(raw, bytes):
            continue
        msg = decode(raw)
        kind = msg.WhichOneof("kind")
        if kind == "ready":
            return "ready", msg.ready.session_id
        if kind == "error":
            return "error", msg.error.code
        if kind == "end":
            return "end", msg.end.reason


async def test_a_draining_edge_refuses_new_calls_cleanly_and_ends_live_ones_with_end(
    own_mesh: LocalMesh,
) -> None:
    mesh = own_mesh
    headers = {"Authorization": f"Bearer {mesh.token}"}
    [edge] = [s for s in mesh.services if s.name == "media-edge"]
    assert edge.proc is not None
    loop = asyncio.get_running_loop()
    async with websockets.connect(mesh.edge_url, additional_headers=headers) as live:
        await live.send('{"start": {"sample_rate_hz": 16000}}')
        async with asyncio.timeout(30):
            assert (await _first_reply(live))[0] == "ready"

        async def phone_line() -> None:  # a live caller streams audio all the time
            while True:
                await live.send(b"\0" * 640)
                await asyncio.sleep(0.02)

        sender = asyncio.create_task(phone_line())
        try:
            edge.proc.send_signal(signal.SIGTERM)
            terminated_at = loop.time()
            # New callers: the listener stays open and each is told why (poll with a
            # deadline: the drain begins a moment after the signal).
            answer: tuple[str, str] = ("", "")
            async with asyncio.timeout(10):
                while answer != ("error", "unavailable"):
                    async with websockets.connect(mesh.edge_url, additional_headers=headers) as late:
                        await late.send('{"start": {"sample_rate_hz": 16000}}')
                        answer = await _first_reply(late)
            # The live call is still up during the drain, then ends with `end`.
            reason, ended_at = "", 0.0
            async with asyncio.timeout(DRAIN_TIMEOUT_S + 15):
                while not reason:
                    raw = await live.recv()
                    if isinstance(raw, str) and (msg := decode(raw)).WhichOneof("kind") == "end":
                        reason, ended_at = msg.end.reason, loop.time()
            with pytest.raises(websockets.ConnectionClosedOK):  # a normal close, not 1011
                async with asyncio.timeout(10):
                    while True:
                        await live.recv()
        finally:
            sender.cancel()
    assert reason == "unavailable"
    assert ended_at - terminated_at >= DRAIN_TIMEOUT_S - 0.5  # it waited for the call first
    assert await asyncio.to_thread(edge.proc.wait, 20) == 0  # and the edge stopped cleanly
