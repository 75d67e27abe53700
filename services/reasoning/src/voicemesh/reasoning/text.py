"""Transcript text -> tokens, and number words both ways.

Whisper-style transcripts come with case and punctuation ("Four people, please.",
"Tomorrow at 7.30 p.m."). `tokenize` lower-cases, strips punctuation (remembering where a
clause ended), and rewrites the spellings of times that Whisper uses into one form
("7.30 p.m." -> "7:30", "pm").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip

_CLAUSE_END = ",.!?;:"
_AM_PM = re.compile(r"\b([ap])\.\s?m\b\.?", re.IGNORECASE)
_GLUED_AM_PM = re.compile(r"\b(\d{1,2}(?:[:.]\d{2})?)\s?([ap])\.?m\b\.?", re.IGNORECASE)
_DOT_TIME = re.compile(r"\b(\d{1,2})\.(\d{2})\b")
_DIGITS_WITH_SUFFIX = re.compile(r"^(\d+)(st|nd|rd|th)$")


@dataclass(frozen=True)
class Token:
    """One word of a transcript: `word` normalised (lower case, no punctuation), `raw` as
    written (case kept), `pause` when punctuation ended a clause right after it."""

    word: str
    raw: str
    pause: bool = False


def tokenize(text: str) -> list[Token]:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _GLUED_AM_PM.sub(lambda m: f"{m.group(1)} {m.group(2).lower()}m", text)
    text = _AM_PM.sub(lambda m: f"{m.group(1).lower()}m", text)
    text = _DOT_TIME.sub(r"\1:\2", text)
    text = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", text)
    tokens: list[Token] = []
    for chunk in text.split():
        pause = chunk[-1] in _CLAUSE_END and not re.fullmatch(r"\d{1,2}:\d{2}", chunk)
        core = chunk.strip(_CLAUSE_END + "\"()[]{}*_-–—…'")
        if not core:
            if tokens and pause:
                tokens[-1] = Token(tokens[-1].word, tokens[-1].raw, True)
            continue
        tokens.append(Token(core.lower(), core, pause))
    return tokens


def words(tokens: list[Token]) -> list[str]:
    return [t.word for t in tokens]


def phrase_at(seq: list[str], i: int, phrase: tuple[str, ...]) -> bool:
    """Whether the words `phrase` appear in `seq` starting at `i`."""
    return tuple(seq[i : i + len(phrase)]) == phrase


def find_phrase(seq: list[str], phrase: tuple[str, ...], start: int = 0) -> int:
    """Index of the first occurrence of `phrase` in `seq` at or after `start`, or -1."""
    if not phrase:
        return -1
    for i in range(start, len(seq) - len(phrase) + 1):
        if phrase_at(seq, i, phrase):
            return i
    return -1


def phrase_words(text: str) -> tuple[str, ...]:
    """A keyword or example phrase in the same normal form as a transcript."""
    return tuple(words(tokenize(text)))


def parse_number(seq: list[str], i: int) -> tuple[int, int] | None:
    """A cardinal number starting at `seq[i]`: (value, index after it). Digits ("12"),
    words ("twelve", "twenty two", "a hundred"), "a dozen"."""
    if i >= len(seq):
        return None
    w = seq[i]
    if w.isdigit():
        return int(w), i + 1
    if w in ("a", "one") and i + 1 < len(seq) and seq[i + 1] in ("hundred", "dozen"):
        return (100 if seq[i + 1] == "hundred" else 12), i + 2
    if w in TENS:
        value, j = TENS[w], i + 1
        if j < len(seq) and seq[j] in UNITS and 0 < UNITS[seq[j]] < 10 and seq[j] != "oh":
            value, j = value + UNITS[seq[j]], j + 1
        return value, j
    if w in UNITS and w != "oh":
        value, j = UNITS[w], i + 1
        if j < len(seq) and seq[j] == "hundred":
            value, j = value * 100, j + 1
        return value, j
    return None


def parse_ordinal(seq: list[str], i: int) -> tuple[int, int] | None:
    """An ordinal ("3rd", "third", "twenty first") at `seq[i]`: (value, index after it)."""
    if i >= len(seq):
        return None
    w = seq[i]
    m = _DIGITS_WITH_SUFFIX.fullmatch(w)
    if m:
        return int(m.group(1)), i + 1
    if w in ORDINALS:
        return ORDINALS[w], i + 1
    if w in TENS and i + 1 < len(seq) and seq[i + 1] in ORDINALS and ORDINALS[seq[i + 1]] < 10:
        return TENS[w] + ORDINALS[seq[i + 1]], i + 2
    return None


_SMALL = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS_WORDS = {v: k for k, v in TENS.items()}


def number_words(n: int) -> str:
    """0..999 as English words ("twenty-two"); larger numbers as digits."""
    if n < 0 or n > 999:
        return str(n)
    if n < 20:
        return _SMALL[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS_WORDS[tens * 10] + (f"-{_SMALL[unit]}" if unit else "")
    hundreds, rest = divmod(n, 100)
    return f"{_SMALL[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")


def ordinal_suffix(n: int) -> str:
    """3 -> "3rd": written with digits, which piper reads as "third"."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
