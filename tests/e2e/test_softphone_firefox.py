"""The softphone page in a real Firefox (Debian's firefox-esr through puppeteer-core over
WebDriver BiDi) calling the whole local mesh over WebRTC: what test_softphone.py shows in
Chromium, shown in Firefox.

Three things stand in for a person's machine, and only these:
- The microphone. Firefox has no switch to take its microphone from a file (Chromium's
  --use-file-for-fake-audio-capture), so before the page's script runs, getUserMedia is
  replaced by one that returns a Web Audio stream playing the WAV. It starts when the page
  asks for the microphone, so the caller's first word comes a fixed lead after Call, as with
  Chromium's fake device. Everything after it is Firefox's own: the track into
  RTCPeerConnection, Opus, ICE/DTLS, the data channel, getStats, AudioContext, the playout.
- The host addresses. Firefox hides them behind mDNS names unless the page is capturing
  with the user's permission. The substituted microphone is no capture Firefox knows of, and
  the edge cannot resolve such names (ICE fails), so the driver turns the hiding off
  (media.peerconnection.ice.obfuscate_host_addresses), as a user's "Allow" does.
- The speaker. Firefox runs Web Audio only with an audio output device; the test machine
  has none, so a private PulseAudio server gives it a null sink.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import padded_wav
from firefox import firefox_available, run_firefox_softphone

from voicemesh.cli.localmesh import LocalMesh

from .conftest import FIXTURES
from .test_softphone import artifact, assert_stacked, assert_the_caller_was_heard_and_answered, page_url

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not firefox_available(),
        reason="needs Debian's firefox-esr and pulseaudio, and puppeteer-core (make tools)",
    ),
]


async def test_a_firefox_call_shows_the_callers_words_the_reply_and_hears_it(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    shot = artifact("softphone_firefox.png")
    wav = padded_wav(FIXTURES / "caller_party.wav", tmp_path / "mic.wav", lead_s=5.0, tail_s=20.0)
    # the keypad, once the turn is done: a digit over Firefox's data channel, taken as it is
    press = {"at_s": 14, "eval": "document.querySelector('#keypad button').click()"}
    result = run_firefox_softphone(
        await page_url(mesh), wav, seconds=16, screenshot=shot, screenshot_at_s=15, actions=[press]
    )
    page = result["page"]
    artifact("softphone_firefox.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    assert result["browser"].startswith("firefox/"), result["browser"]
    assert_the_caller_was_heard_and_answered(result)
    # ... and as audio: loud in the page's meter on the remote stream, and in Firefox's own
    # count of what it played out (inbound-rtp totalAudioEnergy, which Firefox reports)
    assert page["sound"]["agent"], page["sound"]
    inbound = [s for s in result["rtc_stats"] if s["type"] == "inbound-rtp" and s["kind"] == "audio"]
    assert inbound and inbound[0]["packetsReceived"] > 0 and inbound[0]["totalAudioEnergy"] > 0, inbound
    assert page["stats"]["inbound_audio_energy"] > 0
    # Firefox 140's candidate pairs carry no currentRoundTripTime: the page takes RTCP's instead
    assert page["stats"]["rtt_ms"] is not None and page["stats"]["playout_ms"] is not None, page["stats"]
    heard = [t for t in page["turns"] if t["mouth_to_ear_ms"] is not None]
    assert heard, page["turns"]
    assert all(t["mouth_to_ear_ms"] > t["endpoint_ms"] > 0 for t in heard), page["turns"]
    for turn in heard:
        assert_stacked(turn)
    assert page["ice_transport_policy"] == "all"  # the edge's config names none
    assert page["dtmf_sent"] == "1" and page["notices"] == [], page["notices"]
    assert shot.stat().st_size > 10_000
