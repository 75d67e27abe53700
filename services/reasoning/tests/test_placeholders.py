"""Placeholders restored in a reply however the stream splits it."""

from __future__ import annotations

import itertools

import pytest

from voicemesh.reasoning.placeholders import MAX_PLACEHOLDER_CHARS, PlaceholderRestorer

pytestmark = pytest.mark.unit

VALUES = {"[PHONE_1]": "212 555 0187", "[EMAIL_1]": "ann@example.com"}
REPLY = "I'll text [PHONE_1], or mail [EMAIL_1] [maybe]. See [UNKNOWN_3] and [ then ]."
RESTORED = "I'll text 212 555 0187, or mail ann@example.com [maybe]. See [UNKNOWN_3] and [ then ]."


def run(deltas: list[str]) -> tuple[str, list[str]]:
    restorer = PlaceholderRestorer(VALUES)
    out = [restorer.feed(d) for d in deltas]
    out.append(restorer.flush())
    return "".join(out), out


@pytest.mark.parametrize("cuts", list(itertools.combinations(range(1, len(REPLY)), 2))[::7])
def test_any_split_into_three_deltas_restores_the_same_text(cuts: tuple[int, int]) -> None:
    a, b = cuts
    assert run([REPLY[:a], REPLY[a:b], REPLY[b:]])[0] == RESTORED


def test_one_character_at_a_time() -> None:
    assert run(list(REPLY))[0] == RESTORED


def test_text_without_a_bracket_is_released_at_once() -> None:
    _, out = run(["Hello there, ", "how can I help?"])
    assert out == ["Hello there, ", "how can I help?", ""]


def test_only_a_possible_placeholder_is_held_back() -> None:
    restorer = PlaceholderRestorer(VALUES)
    assert restorer.feed("Call [PHO") == "Call "
    assert restorer.feed("NE_1] now") == "212 555 0187 now"
    assert restorer.feed("a [b c") == "a [b c"  # a space: cannot be a placeholder


def test_an_unclosed_bracket_is_not_held_forever() -> None:
    restorer = PlaceholderRestorer(VALUES)
    assert restorer.feed("[") == ""
    long_word = "A" * MAX_PLACEHOLDER_CHARS
    assert restorer.feed(long_word) == "[" + long_word
    assert restorer.flush() == ""


def test_flush_releases_a_dangling_prefix() -> None:
    restorer = PlaceholderRestorer(VALUES)
    assert restorer.feed("the end [PHONE_") == "the end "
    assert restorer.flush() == "[PHONE_"
