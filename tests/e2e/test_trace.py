"""One trace per call: the edge's call span and every service's stage spans share a trace
id across processes (read back from the console exporter in each service's log)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from voicemesh.cli.localmesh import LocalMesh
from voicemesh.cli.wsclient import place_call

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e


def spans_in(log: Path) -> list[dict[str, object]]:
    """The JSON span objects the console exporter wrote into a log, between log lines."""
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    spans, i = [], 0
    while (start := text.find("{\n", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            spans.append(obj)
        i = end
    return spans


async def test_a_call_is_one_trace_across_every_service(mesh: LocalMesh) -> None:
    result = await place_call(mesh.edge_url, mesh.token, [FIXTURES / "caller_party.wav"], turn_timeout_s=30)
    assert result.ok
    logs = mesh.home / "logs"
    deadline = time.monotonic() + 20  # the batch exporter flushes every few seconds
    while True:
        by_service = {
            name: spans_in(logs / f"{name}.log")
            for name in ("media-edge", "session-router", "stt", "reasoning", "tts")
        }
        calls = [
            s
            for s in by_service["media-edge"]
            if s["name"] == "call" and s["attributes"].get("voicemesh.session_id") == result.session_id  # type: ignore[union-attr]
        ]
        if calls:
            trace_id = calls[0]["context"]["trace_id"]  # type: ignore[index]
            joined = {
                name
                for name, spans in by_service.items()
                if any(s["context"]["trace_id"] == trace_id for s in spans)  # type: ignore[index]
            }
            if joined == set(by_service) or time.monotonic() > deadline:
                break
        assert time.monotonic() < deadline, "the edge never exported the call's span"
        await asyncio.sleep(0.5)
    assert joined == {"media-edge", "session-router", "stt", "reasoning", "tts"}, (
        joined,
        time.monotonic() - deadline,
    )
    turn_spans = [
        s
        for s in by_service["media-edge"]
        if s["name"] == "turn" and s["context"]["trace_id"] == trace_id  # type: ignore[index]
    ]
    assert len(turn_spans) == 1
    assert turn_spans[0]["attributes"]["voicemesh.endpoint_ms"] >= 0  # type: ignore[index]
