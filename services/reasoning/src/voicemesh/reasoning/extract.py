"""Slot values and intents from one transcript.

`extract_slots` fills several slots from one utterance without two slots claiming the same
words: dates and times are read first (so the "7" of "at 7" is not a party size), then
choices, numbers, names, yes/no, free text. The slot the caller was just asked for is read
leniently (a bare "Alice." is a name, a bare "four" a number); other slots need a cue
("my name is", "under", "six people", "at 8", "tomorrow") so that corrections and
several-slots-at-once work without mistaking one value for another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time

from voicemesh.agent import Intent, Slot, parse_clock

from .text import Token, find_phrase, parse_number, phrase_at, phrase_words, words
from .when import Span, find_date, find_time

SlotValue = int | float | str | bool | date | time

_TYPE_ORDER = ("date", "time", "choice", "number", "name", "yes_no", "text")

_NAME_CUES = (
    ("my", "name", "is"), ("my", "name's"), ("the", "name", "is"), ("name", "is"),
    ("name's",), ("under", "the", "name", "of"), ("under", "the", "name"), ("under", "name"),
    ("in", "the", "name", "of"), ("under",), ("call", "me"), ("surname", "is"),
)  # fmt: skip
_NAME_CUES_WHEN_ASKED = (("it's",), ("its",), ("it", "is"), ("this", "is"), ("i'm",), ("i", "am"))
_NOT_NAMES = frozenset(
    """a an the and or but so then please thanks thank you it its it's is was be are am i i'm
    me my mine we us our for at on in of to with under name names what who why how when where
    sorry pardon yes yeah yep no nope not don't dont know ok okay sure um uh er hmm well oh
    just that that's this there here table booking book reservation people person guests
    tonight today tomorrow actually again repeat can could would will do does did have has
    want like make change now also too bye goodbye hello hi hey speak talk someone anyone
    wait hold moment second minute time date day number""".split()
)
_ONE_PERSON = (("just", "me"), ("only", "me"), ("just", "myself"), ("myself",), ("me", "alone"))
_TWO_PEOPLE = (("both", "of", "us"), ("a", "couple"), ("me", "and", "my"))
_COUNT_CUES_BEFORE = ("for", "of", "it", "to", "be")

_YES = (
    ("yes",), ("yeah",), ("yep",), ("yup",), ("ya",), ("sure",), ("correct",), ("right",),
    ("exactly",), ("ok",), ("okay",), ("alright",), ("perfect",), ("great",), ("absolutely",),
    ("definitely",), ("affirmative",), ("please", "do"), ("go", "ahead"), ("sounds", "good"),
    ("of", "course"), ("that", "works"), ("fine",), ("book", "it"), ("uh", "huh"),
)  # fmt: skip
_NO = (
    ("no",), ("nope",), ("nah",), ("not",), ("negative",), ("wrong",), ("incorrect",),
    ("don't",), ("do", "not"), ("isn't",), ("wait",),
)  # fmt: skip


@dataclass(frozen=True)
class Extraction:
    """What one utterance said about the slots: `values` found (valid or not) and the slots
    whose value broke the slot's min/max (`invalid`)."""

    values: Mapping[str, SlotValue]
    invalid: tuple[str, ...] = ()


def extract_slots(
    tokens: Sequence[Token],
    slots: Mapping[str, Slot],
    candidates: Sequence[str],
    expected: str | None,
    today: date,
    free_form: bool = True,
) -> Extraction:
    """Values for the `candidates` (slot names) found in `tokens`. `expected` is the slot
    just asked for (read leniently). `free_form=False` skips reading a bare utterance as a
    name or free text (when the caller said something else, like "goodbye")."""
    seq = words(list(tokens))
    free = [True] * len(seq)
    found: dict[str, SlotValue] = {}
    invalid: list[str] = []
    number_aliases = frozenset(a for s in slots.values() if s.type == "number" for a in _alias_words(s))
    order = sorted(
        dict.fromkeys(candidates),
        key=lambda n: (_TYPE_ORDER.index(slots[n].type), n != expected),
    )
    for name in order:
        slot = slots[name]
        lenient = name == expected
        span = _find(slot, list(tokens), seq, free, lenient, today, number_aliases, free_form)
        if span is None:
            continue
        for k in range(span.start, span.end):
            free[k] = False
        found[name] = span.value  # type: ignore[assignment]
        if not in_range(slot, span.value, today):  # type: ignore[arg-type]
            invalid.append(name)
    return Extraction(found, tuple(invalid))


def _find(
    slot: Slot,
    tokens: list[Token],
    seq: list[str],
    free: list[bool],
    lenient: bool,
    today: date,
    number_aliases: frozenset[str],
    free_form: bool,
) -> Span | None:
    if slot.type == "date":
        return find_date(seq, free, today)
    if slot.type == "time":
        return find_time(seq, free, lenient, parse_clock(slot.min), parse_clock(slot.max), number_aliases)
    if slot.type == "choice":
        return _find_choice(seq, free, slot.choices or [])
    if slot.type == "number":
        return _find_number(seq, free, _alias_words(slot), lenient)
    if slot.type == "name":
        return _find_name(tokens, seq, free, lenient, free_form)
    if slot.type == "yes_no":
        if not lenient:
            return None
        answer = yes_or_no(seq)
        return Span(answer, 0, 0) if answer is not None else None
    if slot.type == "text" and lenient and free_form:
        text = " ".join(t.raw for t in tokens).strip()
        return Span(text, 0, len(seq)) if text else None
    return None


def _alias_words(slot: Slot) -> tuple[str, ...]:
    return tuple(w for alias in slot.aliases for w in phrase_words(alias)[:1])


def in_range(slot: Slot, value: SlotValue, today: date) -> bool:
    """Whether `value` is inside the slot's min/max (always true for unbounded slots)."""
    low, high = slot.min, slot.max
    if slot.type == "number" and isinstance(value, int | float):
        return (low is None or value >= low) and (high is None or value <= high)  # type: ignore[operator]
    if slot.type == "time" and isinstance(value, time):
        earliest, latest = parse_clock(low), parse_clock(high)
        return (earliest is None or value >= earliest) and (latest is None or value <= latest)
    if slot.type == "date" and isinstance(value, date):
        ahead = (value - today).days
        return (low is None or ahead >= low) and (high is None or ahead <= high)  # type: ignore[operator]
    return True


def _find_choice(seq: list[str], free: list[bool], choices: Sequence[str]) -> Span | None:
    best: Span | None = None
    for choice in choices:
        phrase = phrase_words(choice)
        i = find_phrase(seq, phrase)
        while i >= 0 and not all(free[i : i + len(phrase)]):
            i = find_phrase(seq, phrase, i + 1)
        if i >= 0 and (best is None or i < best.start):
            best = Span(choice, i, i + len(phrase))
    return best


def _find_number(seq: list[str], free: list[bool], aliases: tuple[str, ...], lenient: bool) -> Span | None:
    first: Span | None = None
    for i in range(len(seq)):
        if not free[i]:
            continue
        parsed = parse_number(seq, i)
        if parsed is None or not all(free[i : parsed[1]]):
            continue
        value, end = parsed
        span = Span(value, i, end)
        if end < len(seq) and seq[end] in aliases:
            return Span(value, i, end + 1)
        cued = i > 0 and seq[i - 1] in _COUNT_CUES_BEFORE
        if first is None and (lenient or cued):
            first = span
    if first is None and lenient:
        for phrase, value in ((p, 1) for p in _ONE_PERSON):
            i = find_phrase(seq, phrase)
            if i >= 0 and all(free[i : i + len(phrase)]):
                return Span(value, i, i + len(phrase))
        for phrase in _TWO_PEOPLE:
            i = find_phrase(seq, phrase)
            if i >= 0 and all(free[i : i + len(phrase)]):
                return Span(2, i, i + len(phrase))
    return first


def _find_name(
    tokens: list[Token], seq: list[str], free: list[bool], lenient: bool, free_form: bool
) -> Span | None:
    cues = _NAME_CUES + (_NAME_CUES_WHEN_ASKED if lenient else ())
    for i in range(len(seq)):
        for cue in cues:
            if phrase_at(seq, i, cue) and all(free[i : i + len(cue)]):
                span = _name_words(tokens, free, i + len(cue))
                if span is not None:
                    return Span(span.value, i, span.end)
    if not (lenient and free_form):
        return None
    start = 0
    while start < len(seq) and (seq[start] in _NOT_NAMES or not free[start]):
        start += 1
    span = _name_words(tokens, free, start)
    if span is None:
        return None
    rest = [w for k, w in enumerate(seq[span.end :], span.end) if free[k]]
    if any(w not in _NOT_NAMES for w in rest):
        return None  # more words than a name: not a bare name answer
    return span


def _name_words(tokens: list[Token], free: list[bool], i: int) -> Span | None:
    picked: list[str] = []
    j = i
    while j < len(tokens) and len(picked) < 3 and free[j]:
        word = tokens[j].word
        if word in _NOT_NAMES or not re.fullmatch(r"[a-z][a-z'.]*", word):
            break
        raw = tokens[j].raw
        picked.append(raw if any(c.isupper() for c in raw) else raw.capitalize())
        j += 1
        if tokens[j - 1].pause:
            break
    return Span(" ".join(picked), i, j) if picked else None


def yes_or_no(seq: Sequence[str]) -> bool | None:
    """True for yes ("yeah", "that's right", "correct"), False for no ("nope", "not
    right"); the first one said wins. None when neither."""
    seq = list(seq)
    for i in range(len(seq)):
        if any(phrase_at(seq, i, p) for p in _NO):
            return False
        if any(phrase_at(seq, i, p) for p in _YES):
            return True
    return None


def intent_matches(intent: Intent, tokens: Sequence[Token]) -> bool:
    """Keywords and examples match as whole words anywhere in the utterance; patterns are
    regular expressions searched in the normalised text (lower case, no punctuation)."""
    seq = words(list(tokens))
    for phrase in (*intent.keywords, *intent.examples):
        if find_phrase(seq, phrase_words(phrase)) >= 0:
            return True
    text = " ".join(seq)
    return any(re.search(p, text, re.IGNORECASE) for p in intent.patterns)


def mentions(slot_name: str, slot: Slot, tokens: Sequence[Token]) -> bool:
    """Whether the caller named the slot ("the time", "the number of people")."""
    seq = words(list(tokens))
    names = [tuple(slot_name.split("_")), *(phrase_words(a) for a in slot.aliases)]
    return any(find_phrase(seq, phrase) >= 0 for phrase in names if phrase)
