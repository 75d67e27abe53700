"""Valkey and NATS stopped and started again during a live call (issue 12, "Outages"): the
call goes on and completes; a new call meanwhile is refused at once as `unavailable`, naming
the registry as unreachable; the events emitted while NATS was down are in the stream once
it is back, exactly once; and with both back the mesh places calls again, nothing restarted."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from collections import Counter

import pytest

from voicemesh.cli.events_cmd import fetch_events
from voicemesh.cli.localmesh import LocalMesh
from voicemesh.cli.wsclient import CallFailed, place_call
from voicemesh.mesh.events import event_name
from voicemesh.mesh.localservers import LocalServer

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e


def edge_gauge(mesh: LocalMesh, name: str, **labels: str) -> float:
    """One sample of the edge's /metrics (0 when absent)."""
    url = f"http://127.0.0.1:{mesh.ports.metrics['media-edge']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    want = {"service": "media-edge", **labels}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m and m.group(1) == name:
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if all(got.get(k) == v for k, v in want.items()):
                return float(m.group(3))
    return 0.0


async def until(check: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def server(mesh: LocalMesh, name: str) -> LocalServer:
    return next(s for s in mesh.servers if s.name == name)


def ensure_running(*servers: LocalServer) -> None:
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGCONT)
        else:
            s.start()


async def test_a_call_survives_valkey_and_nats_going_down_and_coming_back(mesh: LocalMesh) -> None:
    valkey, nats = server(mesh, "valkey"), server(mesh, "nats")
    wavs = [FIXTURES / f"caller_{n}.wav" for n in ("party", "when", "name", "yes")]
    call = asyncio.create_task(place_call(mesh.edge_url, mesh.token, wavs, turn_timeout_s=45))
    try:
        await until(lambda: edge_gauge(mesh, "voicemesh_sessions_active") >= 1, "the call to start")
        valkey.stop()
        assert nats.proc is not None
        nats.proc.kill()
        nats.proc.wait()

        # A new call meanwhile: refused at once, with the true reason.
        started = time.perf_counter()
        with pytest.raises(CallFailed) as refused:
            await place_call(mesh.edge_url, mesh.token, [FIXTURES / "caller_yes.wav"])
        took = time.perf_counter() - started
        print(f"a new call with Valkey down was refused in {took * 1000:.0f} ms: {refused.value}")
        assert "unavailable" in str(refused.value) and "registry" in str(refused.value)
        assert "no_capacity" not in str(refused.value)
        assert took < 5.0

        # The live call's events wait at the edge while NATS is down.
        await until(
            lambda: edge_gauge(mesh, "voicemesh_queue_depth", queue="events") >= 5,
            "events to wait for NATS",
        )
        valkey.start()
        nats.start()
        result = await call
    finally:
        ensure_running(valkey, nats)
        if not call.done():
            call.cancel()

    assert result.ok, result.errors
    assert "booked" in result.turns[-1].reply_text.lower(), [t.reply_text for t in result.turns]
    await until(
        lambda: edge_gauge(mesh, "voicemesh_queue_depth", queue="events") == 0,
        "the edge's events to be published",
    )
    assert edge_gauge(mesh, "voicemesh_dropped_total", what="event") == 0

    events = await fetch_events(mesh.nats_url, result.session_id)
    by_service = Counter((e.service, event_name(e)) for e in events)
    print(sorted(by_service.items()))
    # Every service's events of the call, those emitted while NATS was down included: one
    # start and end, four answered turns, five replies (the greeting and four answers).
    assert by_service[("media-edge", "call_started")] == 1 and by_service[("media-edge", "call_ended")] == 1
    assert by_service[("media-edge", "turn_latency")] == 4, by_service
    assert by_service[("stt", "transcript")] >= 4, by_service
    assert by_service[("reasoning", "response")] == 5, by_service
    assert by_service[("tts", "speech_synthesized")] == 5, by_service
    assert by_service[("session-router", "assigned")] >= 1, by_service
    stamps = [(e.service, event_name(e), e.time.ToNanoseconds()) for e in events]
    assert len(stamps) == len(set(stamps)), "an event stored twice"

    # Both back: a new call is placed again, with nothing restarted.
    again = await place_call(mesh.edge_url, mesh.token, [FIXTURES / "caller_party.wav"], turn_timeout_s=45)
    assert again.ok and "day" in again.reply_text.lower(), again.errors
