"""What counts as the caller cutting in, and what the agent's profile sets."""

from __future__ import annotations

import pytest

from voicemesh.edge.interruptions import InterruptionRules, Verdict, words
from voicemesh.edge.profile import call_settings
from voicemesh.v1 import reasoning_pb2

pytestmark = pytest.mark.unit
AGENT = "Great. What day would you like to come in?"


@pytest.mark.parametrize(
    ("caller", "verdict"),
    [
        ("Uh-huh.", Verdict.BACKCHANNEL),
        ("mm-hmm", Verdict.BACKCHANNEL),
        ("Okay, yeah, right.", Verdict.BACKCHANNEL),
        ("All right, I see.", Verdict.BACKCHANNEL),
        ("", Verdict.TOO_FEW_WORDS),
        ("  ...  ", Verdict.TOO_FEW_WORDS),
        ("Stop.", Verdict.REAL),
        ("Wait, no.", Verdict.REAL),
        ("Yeah, but Friday is better.", Verdict.REAL),
        ("what day would you like", Verdict.ECHO),
        ("Great, what day", Verdict.ECHO),
        ("like what day", Verdict.REAL),  # not in the agent's order: the caller's own words
        ("Friday", Verdict.REAL),  # one word is never taken for echo
    ],
)
def test_the_verdict_on_words_over_the_agent(caller: str, verdict: Verdict) -> None:
    assert InterruptionRules().judge(caller, AGENT) is verdict


def test_min_words_and_a_custom_backchannel_list() -> None:
    rules = InterruptionRules(backchannels=frozenset({"si", "vale"}))
    assert rules.judge("Vale, sí.", "", min_words=2) is Verdict.TOO_FEW_WORDS  # "sí" is not "si"
    assert rules.judge("vale si", "", min_words=2) is Verdict.BACKCHANNEL
    assert rules.judge("okay", "", min_words=2) is Verdict.TOO_FEW_WORDS  # not in this agent's list
    assert rules.judge("un momento", "", min_words=2) is Verdict.REAL


def test_words_are_lower_case_without_punctuation() -> None:
    assert words("Uh-huh, OK. It's 5 o'clock!") == ["uh-huh", "ok", "it's", "5", "o'clock"]
    assert words("Vale, sí. Über_all") == ["vale", "sí", "über", "all"]


def test_an_agent_profile_sets_the_barge_in_rules() -> None:
    profile = reasoning_pb2.AgentProfile(
        endpoint_silence_ms=400,
        allow_barge_in=True,
        barge_in_min_speech_ms=160,
        barge_in_min_words=0,
        backchannels=reasoning_pb2.Backchannels(words=["all right", "gotcha"]),
        echo_margin_db=0.0,
    )
    s = call_settings(profile)
    assert (s.turns.endpoint_silence_ms, s.turns.barge_in_min_speech_ms, s.turns.barge_in_min_words) == (400, 160, 0)
    assert s.interruptions.backchannels == frozenset({"all", "right", "gotcha"})
    assert s.echo.margin_db == 0.0


def test_a_profile_that_says_nothing_keeps_the_defaults() -> None:
    s = call_settings(reasoning_pb2.AgentProfile(allow_barge_in=True))
    assert s.turns.barge_in_min_words == 1 and s.turns.barge_in_min_speech_ms == 100
    assert "uh-huh" in s.interruptions.backchannels
    assert s.echo.margin_db == 25.0
