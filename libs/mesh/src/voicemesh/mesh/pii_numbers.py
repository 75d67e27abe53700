"""Numbers a caller reads aloud, as the transcript holds them, and what they are.

A caller speaks a phone or card number; the transcript holds it as "212, 555, 0187",
"2125550187", "(212) 555-0187", "+1 212 555 0187", "two one two five five five oh one
eight seven", or a mix ("two one two, 555, oh one eight seven"). `find_numbers` reads such
text in three steps, all pure:

1. Tokens. A token is a numeral (`212`), a spoken digit (`two`, `oh`, `o`, `nought`), a
   repeat (`double five`, `triple 0`) or a plus sign (`+`, `plus`). Quantities are
   barriers that never join a number: times (`7:30`), decimals (`12.50`), money (`$12`,
   `£1,250`), thousands (`1,250,000`), percentages. A numeral touching a letter (`3rd`,
   `4pm`, `BK12`) is not a token at all.
2. Runs. Tokens separated only by spaces, commas, dots, dashes and brackets form a run;
   any other text (a word, a colon, a slash) or a full stop before a space ends it. Inside a run, spoken digits and
   one-digit numerals separated by spaces form one *group* ("two one two" is a group of
   three); any punctuation, or a numeral of two or more digits, starts a new group. So
   "two one two, 555, oh one eight seven" is grouped 3-3-4.
3. Pieces. Each run is split, at token boundaries, into the pieces `_classify` accepts,
   choosing the split that covers the most digits (then the fewest pieces). The rules:

   - CARD: 13-19 digits, Luhn-valid, with a major-network prefix (first digit 3-6, or
     2221-2720 for Mastercard's 2-series), any grouping. The prefix rule keeps lists of
     years ("2019, 2020, 2021, 2022") and times ("730, 800, 830 ...") from being cards.
   - PHONE, unambiguous shapes (any grouping): a `+` then 8-15 digits (E.164; a `+1`
     number must be 11 digits of NANP shape); 10 digits of NANP shape (area code and
     exchange start 2-9); 11 digits `1` + NANP.
   - Shapes that must start and end on group boundaries (a window may not cut "one two
     three four five six seven eight" into a seven-digit "number"):
     PHONE: 10-11 digits starting `0` then 1-9, first group longer than one digit (UK and
     European trunk prefix; a lone "oh" before a NANP number stays out of it); 7 digits
     starting 2-9 grouped as one group or 3 then the rest (a NANP local number).
     SSN: 9 digits grouped 9 or 3-2-4, area not 000, 666 or 9xx, group not 00, serial not
     0000, and not one of the few never-issued sample numbers (123-45-6789, so counting
     "one two three ... nine" is no SSN). SIN: 9 digits grouped 9 or 3-3-3, Luhn-valid, not starting 0 or 8, and only
     after "SIN" / "social insurance" / "insurance number" was said (`_SIN_CONTEXT`): one
     in ten 3-3-3 runs passes Luhn by chance. An SSN reading wins a contiguous 9.

Ambiguous by nature, and resolved towards redacting: any seven spoken digits starting
2-9 read as a local phone number (a confirmation code read that way is redacted too), and
any ten digits of NANP shape are a phone number whatever they were meant to be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from voicemesh.mesh.pii_kinds import Hit, PiiKind

DIGIT_WORDS: dict[str, str] = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "nought": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
# "o" is a digit only as a word of its own: not the O of "O'Brien".
_WORD = r"(?:zero|oh|o(?!['’])|nought|one|two|three|four|five|six|seven|eight|nine)"
SPOKEN_DIGIT = rf"(?:[0-9]|(?i:\b{_WORD}\b))"
"""One digit, written or spoken: for patterns that embed digits (the UK NINO)."""

_BARRIER = r"""
    [$£€¥]\s?[0-9][0-9,]*(?:\.[0-9]+)?                           # money
  | (?<![0-9])[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?(?![0-9])         # a time of day
  | (?<![0-9.])[0-9]+\.[0-9]{1,2}(?![0-9])(?!\.[0-9])            # a decimal
  | (?<![0-9,])[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])(?!,[0-9])       # thousands separators
  | [0-9]+(?:\.[0-9]+)?\s?%                                      # a percentage
"""
_TOKENS = re.compile(
    rf"""
    (?P<bar>{_BARRIER})
  | (?P<plus>\+|\bplus\b)
  | (?P<num>(?<![A-Za-z0-9_])[0-9]+(?![A-Za-z0-9_]))
  | (?P<rep>\b(?:double|triple)\s+(?:{_WORD}\b|[0-9](?![A-Za-z0-9_])))
  | (?P<word>\b{_WORD}\b)
    """,
    re.VERBOSE | re.IGNORECASE,
)
_GAP = re.compile(r"[\s,.\-–—()…]{0,6}")  # what may stand between two tokens of one run
_GAP_MARKS = 3  # at most this many non-space characters in a gap
_SENTENCE_END = re.compile(r"(?<!\.)\.\s")  # "at 730. 1250 is fine" is two numbers; "212... 555" is one

MAX_DIGITS = 19  # the longest piece any rule accepts (a 19-digit card)
_SIN_CONTEXT = re.compile(r"\bSIN\b|(?i:\bsocial insurance\b|\binsurance number\b)")
_CONTEXT_CHARS = 40  # how far before a number its context may be


@dataclass(frozen=True, slots=True)
class _Token:
    start: int
    end: int
    digits: str
    single: bool  # a spoken digit, a repeat or a one-digit numeral: joins its neighbours


@dataclass(slots=True)
class _Run:
    plus_at: int | None  # where the leading `+` / "plus" starts, if any
    tokens: list[_Token]


def luhn_valid(digits: str) -> bool:
    """The Luhn check every payment card number (and Canadian SIN) passes."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _token_digits(kind: str, raw: str) -> str:
    if kind == "num":
        return raw
    if kind == "word":
        return DIGIT_WORDS[raw.lower()]
    times, digit = raw.split()
    digit = DIGIT_WORDS.get(digit.lower(), digit)
    return digit * (2 if times.lower() == "double" else 3)


def _joins(gap: str) -> bool:
    if _SENTENCE_END.search(gap):
        return False
    return _GAP.fullmatch(gap) is not None and sum(not c.isspace() for c in gap) <= _GAP_MARKS


def _runs(text: str, blocked: Sequence[tuple[int, int]]) -> list[_Run]:
    runs: list[_Run] = []
    run: _Run | None = None
    prev_end = 0
    for m in _TOKENS.finditer(text):
        kind = m.lastgroup
        assert kind is not None
        if kind == "bar" or any(m.start() < b_end and b_start < m.end() for b_start, b_end in blocked):
            run = None
            continue
        if kind == "plus":
            run = _Run(m.start(), [])
            runs.append(run)
        else:
            raw = m.group()
            token = _Token(m.start(), m.end(), _token_digits(kind, raw), kind != "num" or len(raw) == 1)
            gap = text[prev_end : m.start()]
            pending_plus = run is not None and not run.tokens
            joins = (gap == "" or gap.isspace()) if pending_plus else _joins(gap)
            if run is None or not joins:
                run = _Run(None, [])
                runs.append(run)
            run.tokens.append(token)
        prev_end = m.end()
    return [r for r in runs if r.tokens]


def _groups(text: str, tokens: Sequence[_Token]) -> list[int]:
    """A group number per token: spoken digits separated by spaces share one."""
    out: list[int] = []
    for i, tok in enumerate(tokens):
        if i and tok.single and tokens[i - 1].single and text[tokens[i - 1].end : tok.start].isspace():
            out.append(out[-1])
        else:
            out.append(i)
    return out


def _nanp(d: str) -> bool:
    return len(d) == 10 and d[0] in "23456789" and d[3] in "23456789"


# Never issued: the number on a sample card in a wallet (1938) and in ads.
_SSN_NEVER = frozenset({"078051120", "219099999", "123456789"})


def _ssn_valid(d: str) -> bool:
    if d in _SSN_NEVER:
        return False
    return d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000"


def _card_prefix(d: str) -> bool:
    return d[0] in "3456" or "2221" <= d[:4] <= "2720"


def _classify(d: str, sizes: list[int], aligned: bool, plus: bool, sin_said: bool) -> PiiKind | None:
    n = len(d)
    if plus:
        if d[0] == "1":
            return PiiKind.PHONE if n == 11 and _nanp(d[1:]) else None
        return PiiKind.PHONE if 8 <= n <= 15 and d[0] != "0" else None
    if 13 <= n <= 19 and _card_prefix(d) and luhn_valid(d):
        return PiiKind.CARD
    if _nanp(d) or (n == 11 and d[0] == "1" and _nanp(d[1:])):
        return PiiKind.PHONE
    if not aligned:
        return None
    if n in (10, 11) and d[0] == "0" and d[1] != "0" and sizes[0] > 1:
        return PiiKind.PHONE
    if n == 9:
        if sizes in ([9], [3, 2, 4]) and _ssn_valid(d):
            return PiiKind.SSN
        if sin_said and sizes in ([9], [3, 3, 3]) and d[0] not in "08" and luhn_valid(d):
            return PiiKind.SIN
    if n == 7 and d[0] in "23456789" and (sizes == [7] or sizes[0] == 3):
        return PiiKind.PHONE
    return None


def _pieces(text: str, run: _Run) -> list[tuple[int, int, PiiKind]]:
    """The split of one run into (first token, last token, kind) covering the most digits."""
    tokens = run.tokens
    groups = _groups(text, tokens)
    n = len(tokens)
    start = tokens[0].start
    sin_said = _SIN_CONTEXT.search(text, max(0, start - _CONTEXT_CHARS), start) is not None
    # best[i]: (digits covered, -pieces) for tokens[i:], with the choice that got it
    best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    take: list[tuple[int, PiiKind] | None] = [None] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i], take[i] = best[i + 1], None
        digits = ""
        sizes: list[int] = []  # digits per group within tokens[i : j + 1]
        for j in range(i, n):
            digits += tokens[j].digits
            if len(digits) > MAX_DIGITS:
                break
            if j > i and groups[j] == groups[j - 1]:
                sizes[-1] += len(tokens[j].digits)
            else:
                sizes.append(len(tokens[j].digits))
            aligned = (i == 0 or groups[i] != groups[i - 1]) and (j == n - 1 or groups[j] != groups[j + 1])
            kind = _classify(digits, sizes, aligned, i == 0 and run.plus_at is not None, sin_said)
            if kind is None:
                continue
            score = (best[j + 1][0] + len(digits), best[j + 1][1] - 1)
            if score >= best[i]:
                best[i], take[i] = score, (j, kind)
    out: list[tuple[int, int, PiiKind]] = []
    i = 0
    while i < n:
        chosen = take[i]
        if chosen is None:
            i += 1
            continue
        j, kind = chosen
        out.append((i, j, kind))
        i = j + 1
    return out


def digits_of(text: str) -> str:
    """Every digit `text` holds, written or spoken, in order: "oh one, double 8" -> "0188"."""
    out: list[str] = []
    for m in _TOKENS.finditer(text):
        if m.lastgroup in ("num", "word", "rep"):
            out.append(_token_digits(m.lastgroup, m.group()))
    return "".join(out)


def number_key(kind: PiiKind, digits: str) -> str:
    """The normalised value: a NANP number with or without its leading 1 is one number."""
    if kind is PiiKind.PHONE and len(digits) == 11 and digits[0] == "1":
        return digits[1:]
    return digits


def find_numbers(text: str, blocked: Sequence[tuple[int, int]] = ()) -> list[Hit]:
    """Phone, card, SSN and SIN numbers in `text`, written or spoken, in text order.

    Spans in `blocked` (already claimed by another detector) act as barriers.
    """
    hits: list[Hit] = []
    for run in _runs(text, blocked):
        for i, j, kind in _pieces(text, run):
            start = run.plus_at if i == 0 and run.plus_at is not None else run.tokens[i].start
            end = run.tokens[j].end
            if start > 0 and text[start - 1] == "(":
                start -= 1
            if text.count("(", start, end) > text.count(")", start, end) and text[end : end + 1] == ")":
                end += 1
            digits = "".join(t.digits for t in run.tokens[i : j + 1])
            hits.append(Hit(start, end, kind, number_key(kind, digits)))
    return hits
