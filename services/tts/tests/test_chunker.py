from __future__ import annotations

import itertools
import random

import pytest

from voicemesh.tts.chunker import ClauseChunker

pytestmark = pytest.mark.unit


def chunk_all(text: str, **kwargs: int) -> list[str]:
    chunker = ClauseChunker(**kwargs)
    return chunker.push(text) + chunker.flush()


def chunk_streamed(deltas: list[str], **kwargs: int) -> list[str]:
    chunker = ClauseChunker(**kwargs)
    out: list[str] = []
    for delta in deltas:
        out += chunker.push(delta)
    return out + chunker.flush()


def random_split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 12))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def test_sentences_are_split() -> None:
    assert chunk_all("Hello there. How are you today? I am fine!") == [
        "Hello there.",
        "How are you today?",
        "I am fine!",
    ]


def test_a_sentence_end_waits_for_the_next_character() -> None:
    chunker = ClauseChunker()
    assert chunker.push("It costs 3.") == []
    assert chunker.push("5 dollars. And") == ["It costs 3.5 dollars."]
    assert chunker.flush() == ["And"]


def test_first_clause_may_be_short_later_ones_are_longer() -> None:
    text = "Well, okay then, let me check, one moment, and I will read your booking back to you."
    assert chunk_all(text) == [
        "Well, okay then,",
        "let me check, one moment, and I will read your booking back to you.",
    ]


def test_clause_punctuation_splits_only_with_enough_words() -> None:
    # "Sure," alone is too short to be the first clause.
    assert chunk_all("Sure, I can help with that.") == ["Sure, I can help with that."]
    assert chunk_all("Sure, no problem; let me look that up for you.") == [
        "Sure, no problem;",
        "let me look that up for you.",
    ]


def test_semicolon_colon_and_dashes() -> None:
    text = (
        "Here is the plan for today: first we call the main office; "
        "then we wait a little while for their answer—and then we decide."
    )
    assert chunk_all(text) == [
        "Here is the plan for today:",
        "first we call the main office;",
        "then we wait a little while for their answer—",
        "and then we decide.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is at 7:30 in the morning tomorrow.",
        "The tank holds 3.5 liters of water right now.",
        "We counted 1,000,000 people at the big parade yesterday.",
        "Dr. Smith and Mr. Jones will see you soon.",
        "Bring things, e.g. a pen and some paper.",
        "She moved to the U.S. last year with her family.",
        "The office opens at 9 a.m. on weekdays only.",
        "Our guide is J. R. R. Tolkien for this story.",
        "Visit example.com for the full details today.",
        "Pages 10–12 cover the basics of the topic well.",
    ],
)
def test_no_cut_inside_numbers_or_abbreviations(text: str) -> None:
    assert chunk_all(text) == [text]


def test_list_numbers_at_clause_start_do_not_cut() -> None:
    assert chunk_all("1. Buy milk.\n2. Call mom.") == ["1. Buy milk.", "2. Call mom."]


def test_closing_quotes_stay_with_the_sentence() -> None:
    assert chunk_all('He said "go home." Then he left.') == ['He said "go home."', "Then he left."]
    assert chunk_all("Really?! Yes (I think.) Fine.") == ["Really?!", "Yes (I think.)", "Fine."]


def test_an_ellipsis_ends_a_clause() -> None:
    assert chunk_all("Wait... what did you say?") == ["Wait...", "what did you say?"]


def test_line_breaks_cut_and_whitespace_is_collapsed() -> None:
    assert chunk_all("  Your options\n\n  are   here  \n") == ["Your options", "are here"]


def test_text_without_punctuation_is_cut_after_max_words() -> None:
    words = [f"w{i}" for i in range(25)]
    clauses = chunk_all(" ".join(words), max_words=10)
    assert clauses == [" ".join(words[:10]), " ".join(words[10:20]), " ".join(words[20:])]


def test_push_returns_clauses_as_soon_as_they_are_decided() -> None:
    chunker = ClauseChunker()
    assert chunker.push("Hello") == []
    assert chunker.push(" there.") == []  # the "." might still be "there.com"
    assert chunker.push(" How") == ["Hello there."]
    assert chunker.emitted == 1
    assert chunker.pending == " How"


def test_empty_and_whitespace_only_input() -> None:
    assert chunk_all("") == []
    assert chunk_all("   \n ") == []


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_words"):
        ClauseChunker(min_words=40, max_words=30)


VOCABULARY = [
    "Hello",
    "there",
    "okay",
    "Dr.",
    "Mr.",
    "e.g.",
    "U.S.",
    "3.5",
    "7:30",
    "1,000",
    "—",
    "–",
    "word—word",
    "a,",
    "b;",
    "c:",
    "end.",
    "why?",
    "yes!",
    "wow?!",
    '"quoted."',
    "(aside.)",
    "…",
    "...",
    "\n",
    "1.",
    "J.",
    "I.",
    "10–12",
    "example.com",
    "a.m.",
    "  ",
    "the",
    "cat",
    "sat",
    "on",
    "mat,",
    "and",
    "then",
    "left.",
]


def random_text(rng: random.Random) -> str:
    seps = [" ", " ", " ", "", "\n", "  "]
    return "".join(rng.choice(VOCABULARY) + rng.choice(seps) for _ in range(rng.randint(1, 60)))


@pytest.mark.parametrize("seed", range(300))
def test_streamed_deltas_give_the_same_clauses_as_the_whole_text(seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng)
    settings = {
        "min_first_words": rng.randint(1, 4),
        "min_words": rng.randint(3, 8),
        "max_words": rng.randint(8, 30),
    }
    whole = chunk_all(text, **settings)
    deltas = random_split(text, rng) if len(text) > 1 else [text]
    streamed = chunk_streamed(deltas, **settings)
    assert streamed == whole
    # Nothing lost, added or reordered; only whitespace is normalised.
    assert "".join("".join(c.split()) for c in whole) == "".join(text.split())
    for clause in whole:
        assert clause and clause == " ".join(clause.split())
        assert len(clause.split()) <= settings["max_words"]


@pytest.mark.parametrize("seed", range(50))
def test_one_character_at_a_time(seed: int) -> None:
    rng = random.Random(1000 + seed)
    text = random_text(rng)
    assert chunk_streamed(list(text)) == chunk_all(text)
