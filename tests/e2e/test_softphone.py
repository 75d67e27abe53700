"""The softphone page in a real browser (Debian's Chromium through playwright-core, a WAV
as its microphone) calling the whole local mesh over WebRTC."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from browser import chromium_available, padded_wav, run_softphone
from webrtc_caller import issue_token

from voicemesh.cli.localmesh import LocalMesh

from .conftest import FIXTURES, REPO

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium and playwright-core (make tools)"),
]
ARTIFACTS = REPO / ".artifacts"


async def page_url(mesh: LocalMesh, agent: str = "restaurant") -> str:
    base = f"http://127.0.0.1:{mesh.ports.ws}"
    async with aiohttp.ClientSession() as http:
        token = await issue_token(http, base, mesh.token, agent)
    return f"{base}/?token={token}&agent={agent}"


async def test_a_browser_call_shows_the_callers_words_the_reply_and_hears_it(mesh: LocalMesh, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "softphone_call.png"
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=5.0, tail_s=20.0)
    result = run_softphone(await page_url(mesh), wav, seconds=16, screenshot=shot, screenshot_at_s=15)
    page = result["page"]
    assert result["errors"] == [], result["errors"]
    assert page["connected_ms"] is not None and page["session_id"]
    finals = " ".join(t["text"] for t in page["transcripts"] if t["final"]).lower()
    assert "table" in finals and "four" in finals, page["transcripts"]
    replies = [r for r in page["replies"] if r["final"] and r["turn_id"]]
    assert replies and replies[0]["text"], page["replies"]  # the reply to the caller's turn, as text
    assert page["stats"]["inbound_audio_energy"] > 0  # and as audio, played in the browser
    turn = next(t for t in page["turns"] if t["turn_id"] == replies[0]["turn_id"])
    assert turn["mouth_to_ear_ms"] is not None and turn["mouth_to_ear_ms"] > turn["endpoint_ms"] > 0
    assert shot.stat().st_size > 10_000


async def test_a_page_with_a_bad_token_is_told_why(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    url = f"http://127.0.0.1:{mesh.ports.ws}/?token=vm1.e30.AAAA"
    result = run_softphone(url, wav, seconds=1)
    assert result["page"]["status"] == "error"
    assert "401" in result["page"]["error"] and "signature" in result["page"]["error"]
