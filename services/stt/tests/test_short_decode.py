"""The short decode's pure rules: padding, the token cap, and when a transcript is dropped for
the full 30 s window (the loops tiny.en produced here on short windows are the examples)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.settings import SettingsError, load_settings
from voicemesh.stt.service import SttService, SttSettings
from voicemesh.stt.short_decode import (
    MAX_NEW_TOKENS,
    Fallback,
    ShortDecodeRules,
    compression_ratio,
    ct2_max_length,
    has_loop,
    normalized_words,
)

pytestmark = pytest.mark.unit

RULES = ShortDecodeRules()
SECOND = 16000

# Transcripts tiny.en gave on the held speech with too little padding (issue 11).
LOOPS = [
    "My name is Alice. My name is Alice. My name is Alice.",
    "Where can I park my car? Where can I park my car? Where can I park",
    "Hi, I would like a table for 4 people. Please, please, please, please, please, please,",
    "Yes, not slide. Yes, not slide.",
    "And so my fellow Americans. And so my fellow Americans.",
    "and so and so and so and so and so and so",
    "And so my fellow Americans asked not to ask not to ask not to ask not to ask",
    "I want a table for two. Call me on 212-5550187. Call me on 212-5550187.",
]
# What people say, repeats included, that must not cost a fallback.
SPEECH = [
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "I want a table for two Call me on 212-555-0187",
    "No, no, no.",
    "Thank you, thank you.",
    "Bye bye.",
    "Yes, yes, that's right.",
    "Tomorrow at 730 in the evening.",
    "",
]


@pytest.mark.parametrize("text", LOOPS)
def test_a_looping_transcript_goes_to_the_full_window(text: str) -> None:
    assert RULES.verdict(text, tokens=10, samples=3 * SECOND, no_speech_prob=0.1) is not None


@pytest.mark.parametrize("text", SPEECH)
def test_what_people_say_keeps_the_short_transcript(text: str) -> None:
    assert RULES.verdict(text, tokens=len(text.split()) + 2, samples=11 * SECOND, no_speech_prob=0.1) is None


def test_a_repeat_is_a_unit_said_again_back_to_back() -> None:
    assert has_loop(normalized_words("no no no no"))  # one word four times
    assert not has_loop(normalized_words("no no no"))
    assert has_loop(normalized_words("and so and so and"))  # a pair two and a half times
    assert not has_loop(normalized_words("thank you thank you"))
    assert has_loop(normalized_words("my name is my name is"))  # three words twice
    assert not has_loop(normalized_words("my name is alice, is my name alice"))


def test_words_are_compared_without_case_or_punctuation() -> None:
    assert normalized_words("Where can I park my car? …") == ["where", "can", "i", "park", "my", "car"]
    assert has_loop(normalized_words("Please, please. PLEASE! please?"))


def test_reaching_the_token_cap_is_a_loop_even_when_the_words_differ() -> None:
    cap = RULES.max_new_tokens(2 * SECOND)
    assert (
        RULES.verdict("ask not what your country", tokens=cap, samples=2 * SECOND, no_speech_prob=0.1)
        is Fallback.TOKEN_CAP
    )
    assert (
        RULES.verdict("ask not what your country", tokens=cap - 1, samples=2 * SECOND, no_speech_prob=0.1)
        is None
    )


def test_the_cap_grows_with_the_audio_and_stops_at_whisper_s_limit() -> None:
    assert RULES.max_new_tokens(SECOND) == 12  # 6 a second plus 6
    assert RULES.max_new_tokens(5 * SECOND) == 36
    assert RULES.max_new_tokens(SECOND // 2) == 9  # rounded up
    assert ShortDecodeRules(tokens_per_s=50, max_audio_s=20).max_new_tokens(20 * SECOND) == MAX_NEW_TOKENS


def test_more_words_than_the_audio_holds_is_dropped() -> None:
    twelve = "one two three four five six seven eight nine ten eleven twelve"
    assert RULES.verdict(twelve, tokens=12, samples=SECOND, no_speech_prob=0.1) in (
        Fallback.TOO_LONG,
        Fallback.TOKEN_CAP,
    )
    assert RULES.verdict(twelve, tokens=11, samples=SECOND, no_speech_prob=0.1) is Fallback.TOO_LONG
    assert RULES.verdict(twelve, tokens=12, samples=3 * SECOND, no_speech_prob=0.1) is None


def test_a_text_that_compresses_like_a_loop_is_dropped() -> None:
    text = "ahahahahahahahahahahahahahahahahahahahahahahahahahahahahahaha"
    assert compression_ratio(text) > 2.4
    assert RULES.verdict(text, tokens=20, samples=5 * SECOND, no_speech_prob=0.1) is Fallback.COMPRESSION
    assert compression_ratio(SPEECH[0]) < 2.4


def test_what_the_model_calls_silence_goes_to_the_full_window_s_guard() -> None:
    # tiny.en on 1 s of digital silence, 4 s padding: "you", no_speech 0.987, logprob -0.69.
    assert RULES.verdict("you", tokens=1, samples=SECOND, no_speech_prob=0.987) is Fallback.NO_SPEECH
    assert RULES.verdict("Where can I park my car?", 7, 2 * SECOND, no_speech_prob=0.43) is None


def test_the_short_decode_applies_to_speech_up_to_max_audio() -> None:
    assert RULES.applies(SECOND)
    assert RULES.applies(25 * SECOND)
    assert not RULES.applies(25 * SECOND + 1)  # the full window
    assert not RULES.applies(0)
    assert RULES.pad_samples == 4 * SECOND


def test_ctranslate2_gets_a_max_length_that_allows_the_whole_cap() -> None:
    # CTranslate2 decodes at most min(max_length / 2, max_length - (prompt - 1)) steps.
    for prompt, cap in [(2, 12), (2, 1), (4, 36), (6, 1), (2, MAX_NEW_TOKENS)]:
        length = ct2_max_length(prompt, cap)
        assert min(length // 2, length - (prompt - 1)) == cap
    with pytest.raises(ValueError):
        ct2_max_length(0, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pad_s": -1},
        {"max_audio_s": 28},
        {"tokens_per_s": 0},
        {"token_slack": 0},
        {"compression_ratio": 1},
        {"max_no_speech_prob": 0},
    ],
)
def test_rules_that_cannot_work_are_refused_with_their_name(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ShortDecodeRules(**kwargs)  # type: ignore[arg-type]


def test_the_setting_turns_the_short_decode_off(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx: Any = SimpleNamespace(metrics=ServiceMetrics.create("stt"))
    monkeypatch.delenv("VOICEMESH_STT_SHORT_DECODE", raising=False)
    assert SttService(ctx, load_settings(SttSettings)).engine.settings.short_decode == ShortDecodeRules()
    monkeypatch.setenv("VOICEMESH_STT_SHORT_DECODE", "false")
    assert SttService(ctx, load_settings(SttSettings)).engine.settings.short_decode is None
    monkeypatch.setenv("VOICEMESH_STT_SHORT_DECODE", "sometimes")
    with pytest.raises(SettingsError, match="VOICEMESH_STT_SHORT_DECODE"):
        load_settings(SttSettings)
