"""WebRTC calls through the whole local mesh (real stt, reasoning and tts models), placed by
a real WebRTC peer (aiortc: ICE, DTLS-SRTP, Opus, the `voicemesh` data channel) through the
edge's WHIP endpoint. The browser's own tests are in test_softphone.py."""

from __future__ import annotations

import asyncio
import wave

import aiohttp
import numpy as np
import pytest
from webrtc_caller import WebRtcCall, WhipRefused, hang_up, issue_token, place

from voicemesh.cli.localmesh import LocalMesh

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e


def base(mesh: LocalMesh) -> str:
    return f"http://127.0.0.1:{mesh.ports.ws}"


def wav_pcm(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


def loud_after(call: WebRtcCall, t: float) -> float:
    """Seconds of agent audio heard after `t` that is clearly not silence."""
    frames = [pcm for at, pcm in call.heard if at > t]
    return sum(len(p) for p in frames if np.abs(np.frombuffer(p, np.int16)).max() > 1000) / 32000


async def until(check, limit_s: float) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(limit_s):
        while not check():
            await asyncio.sleep(0.05)


async def test_a_webrtc_caller_is_greeted_heard_and_answered(mesh: LocalMesh) -> None:
    silence = bytes(32000 * 4)  # the greeting plays while the caller waits
    script = silence + wav_pcm("caller_party.wav") + bytes(32000 * 8)
    async with aiohttp.ClientSession() as http:
        token = await issue_token(http, base(mesh), mesh.token, "restaurant")
        call = await place(http, base(mesh), token, "restaurant", script)
        try:
            await until(lambda: "ready" in call.kinds(), 20)
            assert call.of("ready")[0]["agent"] == "Bella Vista"  # the agent the token was for, by name
            # the caller's words arrive as a final transcript on the data channel
            # (a pause after "Hi," may end a turn early: the words then arrive in the next one)
            await until(lambda: "table" in call.finals(), 30)
            assert "four" in call.finals()
            spoke_at = await call.track.sent((len(silence) + len(wav_pcm("caller_party.wav"))) // 640)
            # the reply: its text streams to the page, and its audio reaches the caller's ear
            await until(lambda: any(r.get("final") and r.get("turn_id") for r in call.of("response")), 30)
            await until(lambda: loud_after(call, spoke_at) > 0.5, 20)
            assert loud_after(call, 0) > loud_after(call, spoke_at) > 0.5  # greeting, then reply
            assert any("timing" in m for m in call.messages)
            assert await hang_up(http, base(mesh), token, call) == 200
            await until(lambda: "end" in call.kinds(), 10)
            assert call.of("end")[0]["reason"] == "caller"
        finally:
            await call.close()


async def test_an_expired_or_foreign_token_is_refused(mesh: LocalMesh) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(WhipRefused) as refused:
            await place(http, base(mesh), "vm1.e30.AAAA", "restaurant", b"")
        assert refused.value.status == 401 and "signature" in refused.value.reason
        with pytest.raises(WhipRefused) as refused:
            await issue_token(http, base(mesh), "not-the-edge-token")
        assert refused.value.status == 401
        clinic_only = await issue_token(http, base(mesh), mesh.token, "clinic")
        with pytest.raises(WhipRefused) as refused:
            await place(http, base(mesh), clinic_only, "restaurant", b"")
        assert refused.value.status == 403 and "clinic" in refused.value.reason
