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
    # the browser's own gain control and noise suppression adapt as they go (and differently
    # on a busy machine): the test's microphone is its WAV as it is
    return f"{base}/?token={token}&agent={agent}&processing=off"


async def test_a_browser_call_shows_the_callers_words_the_reply_and_hears_it(mesh: LocalMesh, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "softphone_call.png"
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=5.0, tail_s=20.0)
    result = run_softphone(await page_url(mesh), wav, seconds=16, screenshot=shot, screenshot_at_s=15)
    page = result["page"]
    assert result["errors"] == [], result["errors"]
    assert page["connected_ms"] is not None and page["session_id"]
    finals = " ".join(t["text"] for t in page["transcripts"] if t["final"]).lower()
    assert "table" in finals and ("four" in finals or "4" in finals), page["transcripts"]
    replies = [r for r in page["replies"] if r["final"] and r["turn_id"]]
    assert replies and replies[0]["text"], page["replies"]  # the reply to the caller's turn, as text
    assert page["stats"]["inbound_audio_energy"] > 0  # and as audio, played in the browser
    # every reply that played has its turn's timing, and the page measured it to the ear
    # (a reply to a turn the caller went on from never plays, and has none)
    heard = [t for t in page["turns"] if t["mouth_to_ear_ms"] is not None]
    assert heard, page["turns"]
    assert all(t["mouth_to_ear_ms"] > t["endpoint_ms"] > 0 for t in heard), page["turns"]
    assert shot.stat().st_size > 10_000


async def test_a_page_with_a_bad_token_is_told_why(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    url = f"http://127.0.0.1:{mesh.ports.ws}/?token=vm1.e30.AAAA"
    result = run_softphone(url, wav, seconds=1)
    assert result["page"]["status"] == "error"
    assert "401" in result["page"]["error"] and "signature" in result["page"]["error"]


async def test_talking_over_the_agent_stops_its_audio_in_the_browser(mesh: LocalMesh, tmp_path: Path) -> None:
    # the greeting takes about six seconds; the caller talks over it two and a half in
    wav = padded_wav(FIXTURES / "caller_when.wav", tmp_path / "mic.wav", lead_s=2.5, tail_s=20.0)
    result = run_softphone(await page_url(mesh), wav, seconds=9, screenshot=ARTIFACTS / "softphone_barge_in.png")
    page = result["page"]
    assert result["errors"] == [], result["errors"]
    agent, caller = page["sound"]["agent"], page["sound"]["caller"][0]
    # the agent was talking when the caller cut in (the greeting pauses between clauses) ...
    during = [span for span in agent if span[0] < caller[1] and span[1] > caller[0] - 250]
    assert during, page["sound"]
    # ... and went quiet while the caller still spoke: its next sound is the reply, after
    assert max(span[1] for span in during) < caller[1], page["sound"]
    greeted = page["replies"][0]
    assert greeted["interrupted"] and not greeted["turn_id"], page["replies"]
    assert "evening" in " ".join(t["text"] for t in page["transcripts"] if t["final"]).lower()
