"""The softphone page in a real browser (Debian's Chromium through playwright-core, a WAV
as its microphone) calling the whole local mesh over WebRTC."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from browser import chromium_available, padded_wav, run_softphone
from scripted_llm import ScriptedLlm
from webrtc_caller import issue_token

from voicemesh.cli.localmesh import LocalMesh

from .conftest import FIXTURES, LLM_PORT, REPO
from .test_filler_call import ANSWERS, PHRASES, slow_desk

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium and playwright-core (make tools)"),
]
ARTIFACTS = REPO / ".artifacts"


def artifact(name: str) -> Path:
    """Where a test leaves a screenshot or the page's data for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def page_url(mesh: LocalMesh, agent: str = "restaurant", token_agent: str | None = None) -> str:
    """The page for a call to `agent`, with a token for `token_agent` (by default, the same)."""
    base = f"http://127.0.0.1:{mesh.ports.ws}"
    async with aiohttp.ClientSession() as http:
        token = await issue_token(http, base, mesh.token, agent if token_agent is None else token_agent)
    # the browser's own gain control and noise suppression adapt as they go (and differently
    # on a busy machine): the test's microphone is its WAV as it is
    return f"{base}/?token={token}&agent={agent}&processing=off"


def assert_stacked(turn: dict[str, Any]) -> None:
    """A turn's waterfall: contiguous from 0, the edge's part ending at its voice-to-voice time
    and the page's at mouth to ear, which comes after it."""
    stages = turn["waterfall"]
    assert stages[0]["from_ms"] == 0, stages
    assert all(s["to_ms"] >= s["from_ms"] for s in stages), stages
    assert all(b["from_ms"] == a["to_ms"] for a, b in pairwise(stages)), stages
    edge = [s for s in stages if s["stage"] != "network"]
    assert edge[-1]["to_ms"] == turn["edge_voice_to_voice_ms"], stages
    assert stages[-1]["stage"] == "network" and stages[-1]["to_ms"] == turn["mouth_to_ear_ms"], stages
    assert turn["mouth_to_ear_ms"] >= turn["edge_voice_to_voice_ms"], turn


def assert_the_caller_was_heard_and_answered(result: dict[str, Any]) -> None:
    """A party-of-four call: no page errors, connected, the caller's words as a final
    transcript, and the reply to that turn as text."""
    page = result["page"]
    assert result["errors"] == [], result["errors"]
    assert page["connected_ms"] is not None and page["session_id"]
    finals = " ".join(t["text"] for t in page["transcripts"] if t["final"]).lower()
    assert "table" in finals and ("four" in finals or "4" in finals), page["transcripts"]
    replies = [r for r in page["replies"] if r["final"] and r["turn_id"]]
    assert replies and replies[0]["text"], page["replies"]  # the reply to the caller's turn, as text


async def test_a_browser_call_shows_the_callers_words_the_reply_and_hears_it(mesh: LocalMesh, tmp_path: Path) -> None:
    shot = artifact("softphone_call.png")
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=5.0, tail_s=20.0)
    # the keypad, once the reply has played: a key the agent answers (and no `error` back)
    press = {"at_s": 13, "eval": "document.querySelector('#keypad button').click()"}
    result = run_softphone(await page_url(mesh), wav, seconds=16, screenshot=shot, screenshot_at_s=15, actions=[press])
    page = result["page"]
    artifact("softphone_call.json").write_text(json.dumps(page, indent=1), encoding="utf-8")
    assert_the_caller_was_heard_and_answered(result)
    assert page["stats"]["inbound_audio_energy"] > 0  # and as audio, played in the browser
    # every reply that played has its turn's timing, and the page measured it to the ear
    # (a reply to a turn the caller went on from never plays, and has none)
    heard = [t for t in page["turns"] if t["mouth_to_ear_ms"] is not None]
    assert heard, page["turns"]
    assert all(t["mouth_to_ear_ms"] > t["endpoint_ms"] > 0 for t in heard), page["turns"]
    for turn in heard:
        assert_stacked(turn)
    assert page["ice_transport_policy"] == "all"  # the local mesh relays nothing
    assert page["dtmf_sent"] == "1" and page["notices"] == [], page["notices"]
    spoken = {t["turn_id"] for t in page["transcripts"]}
    assert any(r["turn_id"] and r["turn_id"] not in spoken for r in page["replies"]), page["replies"]
    assert shot.stat().st_size > 10_000


async def test_the_waterfall_stacks_the_edges_durations(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    # durations as the edge sends them: stt_final_ms of 0 is left out of the JSON; rounded one
    # by one, the four can add up to a millisecond past edge_voice_to_voice_ms
    turn = {"endpoint_ms": 300, "first_token_ms": 121, "tts_first_audio_ms": 60, "edge_voice_to_voice_ms": 480}
    heard = {**turn, "stt_final_ms": 40, "edge_voice_to_voice_ms": 540, "mouth_to_ear_ms": 650}
    probe = f'import("/measure.js").then((m) => [m.waterfall({json.dumps(turn)}), m.waterfall({json.dumps(heard)})])'
    result = run_softphone(await page_url(mesh), wav, seconds=0, call=False, evaluate=probe)
    alone, stacked = result["evaluated"]
    assert [(s["stage"], s["from_ms"], s["to_ms"]) for s in alone] == [
        ("endpoint", 0, 300),
        ("stt", 300, 300),
        ("reasoning", 300, 421),
        ("tts", 421, 480),
        ("send", 480, 480),
    ]
    assert [(s["stage"], s["from_ms"], s["to_ms"]) for s in stacked] == [
        ("endpoint", 0, 300),
        ("stt", 300, 340),
        ("reasoning", 340, 461),
        ("tts", 461, 521),
        ("send", 521, 540),
        ("network", 540, 650),
    ]


async def test_the_round_trip_falls_back_to_rtcps_where_the_pair_has_none(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    pair = {"type": "candidate-pair", "nominated": True, "state": "succeeded"}
    rtcp = {"type": "remote-inbound-rtp", "kind": "audio", "roundTripTime": 0.0123}
    reports = [[pair, rtcp], [{**pair, "currentRoundTripTime": 0.004}, rtcp], [pair]]  # Firefox; Chromium; neither
    probe = f"import('/measure.js').then((m) => {json.dumps(reports)}.map((r) => m.roundTripMs(r)))"
    result = run_softphone(await page_url(mesh), wav, seconds=0, call=False, evaluate=probe)
    assert result["evaluated"] == [12, 4, None]


async def test_a_refused_microphone_is_told_as_such(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    result = run_softphone(await page_url(mesh), wav, seconds=1, deny_microphone=True)
    page = result["page"]
    assert page["status"] == "error" and "microphone was refused" in page["error"], page["error"]
    assert page["can_call"]  # allowed, the next Call may work


async def test_a_page_with_a_bad_token_is_told_why(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    url = f"http://127.0.0.1:{mesh.ports.ws}/?token=vm1.e30.AAAA"
    result = run_softphone(url, wav, seconds=1, screenshot=artifact("softphone_bad_token.png"))
    assert result["page"]["status"] == "error"
    assert "401" in result["page"]["error"] and "signature" in result["page"]["error"]
    assert not result["page"]["can_call"] and result["connected_after_ms"] is None


async def test_a_page_asking_for_an_unknown_agent_names_the_known_ones(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    url = await page_url(mesh, "nosuch", token_agent="")
    result = run_softphone(url, wav, seconds=1, screenshot=artifact("softphone_unknown_agent.png"))
    page = result["page"]
    assert page["status"] == "error" and not page["can_call"], page["error"]
    assert '"nosuch"' in page["error"] and "restaurant" in page["error"] and "clinic" in page["error"]
    assert result["connected_after_ms"] is None  # no call placed to another agent
    # picking one of them makes Call possible
    pick = """(() => { const agent = document.querySelector('#agent');
        agent.value = 'clinic'; agent.dispatchEvent(new Event('change'));
        return [window.voicemesh.status, document.querySelector('#call').disabled]; })()"""
    result = run_softphone(url, wav, seconds=0, call=False, evaluate=pick)
    assert result["evaluated"] == ["idle", False]


async def test_hanging_up_while_connecting_ends_the_attempt(mesh: LocalMesh, tmp_path: Path) -> None:
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=0.5, tail_s=1.0)
    result = run_softphone(await page_url(mesh), wav, seconds=1, hangup_while_connecting=True)
    page = result["page"]
    assert result["errors"] == [], result["errors"]
    assert page["status"] == "ended" and page["error"] == "", page
    assert page["ended_reason"] == "hung up while connecting" and page["connected_ms"] is None


async def test_talking_over_the_agent_stops_its_audio_in_the_browser(mesh: LocalMesh, tmp_path: Path) -> None:
    # the greeting takes about six seconds; the caller talks over it two and a half in
    wav = padded_wav(FIXTURES / "caller_when.wav", tmp_path / "mic.wav", lead_s=2.5, tail_s=20.0)
    result = run_softphone(await page_url(mesh), wav, seconds=9, screenshot=artifact("softphone_barge_in.png"))
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


async def test_a_late_reply_shows_its_filler_before_the_answer(mesh: LocalMesh, tmp_path: Path) -> None:
    """The late-reply agent (its model waits 2.5 s, tests/e2e/test_filler_call.py): the page
    shows the filler the edge played, for the caller's turn, and then the whole answer."""
    wav = padded_wav(FIXTURES / "caller_parking.wav", tmp_path / "mic.wav", lead_s=4.0, tail_s=16.0)
    url = await page_url(mesh, agent="late-reply")
    async with ScriptedLlm(slow_desk, port=LLM_PORT):  # served by this loop: the browser runs in a thread
        result = await asyncio.to_thread(run_softphone, url, wav, seconds=16)
    page = result["page"]
    artifact("softphone_filler.json").write_text(json.dumps(page, indent=1), encoding="utf-8")
    assert result["errors"] == [], result["errors"]
    spoken = {t["turn_id"] for t in page["transcripts"] if t["final"]}
    assert page["fillers"] and page["fillers"][0]["text"] in PHRASES, page["fillers"]
    assert page["fillers"][0]["turn_id"] in spoken, (page["fillers"], page["transcripts"])
    answers = [r["text"].strip() for r in page["replies"] if r["final"] and r["turn_id"] in spoken]
    assert ANSWERS[0] in answers, page["replies"]
    assert not any(f["text"] in r["text"] for f in page["fillers"] for r in page["replies"])  # never a reply
