"""PII redaction: personal data in a transcript becomes typed placeholders.

Before text leaves for an external LLM, phone numbers, e-mail addresses, payment cards and
national ID numbers are replaced by placeholders; the reply is restored so the agent can
say a value back. Logs and session events get a one-way mask instead.

    r = Redactor()
    red = r.redact("call me on 212 555 0187")
    red.text                                    # "call me on [PHONE_1]"
    red.values                                  # {"[PHONE_1]": "212 555 0187"}
    Redactor.restore("I'll call [PHONE_1] back", red.values)   # "... 212 555 0187 back"
    r.mask("call me on 212 555 0187")           # "call me on [PHONE]"

A conversation passes the mapping of earlier turns back in (`redact(text, values=...)`):
the same value, however it was spoken the second time, keeps its placeholder, and new
values are numbered on. Placeholders are `[KIND_N]`; `restore` matches them exactly but
case-insensitively (`[phone_1]` is restored, `[PHONE 1]` is not) and leaves any it does not
know as they are.

What counts as a number, an e-mail or a NINO, in written and spoken forms, is documented
in `pii_numbers` and `pii_text`. Pure: no I/O, no clock, safe to share between calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from voicemesh.mesh.pii_kinds import Hit, PiiKind
from voicemesh.mesh.pii_numbers import digits_of, find_numbers, number_key
from voicemesh.mesh.pii_text import email_key, find_emails, find_ninos, nino_key

__all__ = ["PiiKind", "Redaction", "Redactor"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\[([A-Za-z][A-Za-z0-9_]*)_([0-9]+)\]")
_BUILTIN = {kind.label: kind for kind in PiiKind}


@dataclass(frozen=True, slots=True)
class Redaction:
    """The redacted text, the whole placeholder mapping so far, and what this text held.

    `values` holds the mapping passed in plus any new placeholders (placeholder -> the
    text as first heard); pass it to the next `redact` and to `restore`. `counts` counts
    replacements in this text, keyed by `PiiKind` or by the configured pattern's name.
    """

    text: str
    values: dict[str, str]
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Pattern:
    name: str  # as configured: the key in `Redaction.counts`
    label: str  # upper-cased: the KIND in `[KIND_N]`
    regex: re.Pattern[str]


class _Found(NamedTuple):
    start: int
    end: int
    label: str
    counted: str  # a PiiKind, or a configured pattern's name
    key: str


def _kind(value: PiiKind | str) -> PiiKind:
    try:
        return PiiKind(value.lower() if isinstance(value, str) else value)
    except ValueError:
        known = ", ".join(k.value for k in PiiKind)
        raise ValueError(f"unknown PII kind {value!r}; kinds: {known}") from None


def _pattern(name: object, pattern: object) -> _Pattern:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"PII pattern name {name!r}: use a letter, then letters, digits or _")
    label = name.upper()
    if label in _BUILTIN:
        raise ValueError(f"PII pattern {name!r}: the name is taken by the built-in kind {label}")
    if not isinstance(pattern, str):
        raise ValueError(f"PII pattern {name!r}: expected a regular expression string, got {pattern!r}")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"PII pattern {name!r} is not a valid regular expression ({pattern!r}): {exc}"
        ) from exc
    if regex.fullmatch("") is not None:
        raise ValueError(f"PII pattern {name!r} matches the empty string ({pattern!r})")
    return _Pattern(name, label, regex)


def _overlaps(start: int, end: int, taken: Iterable[tuple[int, int]]) -> bool:
    return any(start < t_end and t_start < end for t_start, t_end in taken)


class Redactor:
    """Finds personal data of the configured kinds and replaces it.

    `kinds`: the built-in kinds to redact (default: all); `PiiKind` members or their
    names. `extra`: more kinds as name -> regular expression (`{"booking_ref":
    r"\\bBK-\\d{6}\\b"}`), matched before the built-in kinds; placeholders use the name
    upper-cased (`[BOOKING_REF_1]`). A bad name or pattern raises `ValueError` naming it.

    Every built-in detector always runs, so turning a kind off never lets its digits be
    read as another kind (a card is not half-redacted as a phone number); only the
    replacements of the kinds turned off are dropped.
    """

    def __init__(
        self,
        kinds: Iterable[PiiKind | str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(kinds, str):
            raise ValueError(f"PII kinds: expected a collection of kinds, got the string {kinds!r}")
        self.kinds: frozenset[PiiKind] = frozenset(PiiKind if kinds is None else (_kind(k) for k in kinds))
        patterns = tuple(_pattern(name, pattern) for name, pattern in (extra or {}).items())
        labels = [p.label for p in patterns]
        for label in labels:
            if labels.count(label) > 1:
                names = [p.name for p in patterns if p.label == label]
                raise ValueError(f"PII patterns {names} share the placeholder name {label}")
        self._patterns = patterns

    def _find(self, text: str) -> list[_Found]:
        found: list[_Found] = []
        taken: list[tuple[int, int]] = []
        for p in self._patterns:
            for m in p.regex.finditer(text):
                if m.end() > m.start() and not _overlaps(m.start(), m.end(), taken):
                    found.append(_Found(m.start(), m.end(), p.label, p.name, m.group()))
                    taken.append((m.start(), m.end()))
        hits: list[Hit] = []
        for finder in (find_emails, find_ninos, find_numbers):
            new = [h for h in finder(text, taken) if not _overlaps(h.start, h.end, taken)]
            hits.extend(new)
            taken.extend((h.start, h.end) for h in new)
        found.extend(
            _Found(h.start, h.end, h.kind.label, h.kind, h.key) for h in hits if h.kind in self.kinds
        )
        return sorted(found)

    def _key(self, label: str, value: str) -> str | None:
        """The normalised value of a stored placeholder, to match the same value again."""
        kind = _BUILTIN.get(label)
        if kind is PiiKind.EMAIL:
            return email_key(value)
        if kind is PiiKind.NINO:
            return nino_key(value)
        if kind is not None:
            return number_key(kind, digits_of(value))
        if any(p.label == label for p in self._patterns):
            return value
        return None

    def redact(self, text: str, values: Mapping[str, str] | None = None) -> Redaction:
        """Replace personal data with `[KIND_N]`, reusing the placeholders in `values`."""
        mapping = dict(values or {})
        known: dict[tuple[str, str], str] = {}
        last: dict[str, int] = {}
        for placeholder, original in mapping.items():
            m = _PLACEHOLDER.fullmatch(placeholder)
            if m is None:
                continue
            label = m.group(1).upper()
            last[label] = max(last.get(label, 0), int(m.group(2)))
            key = self._key(label, original)
            if key is not None:
                known.setdefault((label, key), placeholder)
        out: list[str] = []
        counts: dict[str, int] = {}
        pos = 0
        for f in self._find(text):
            placeholder = known.get((f.label, f.key))
            if placeholder is None:
                last[f.label] = last.get(f.label, 0) + 1
                placeholder = f"[{f.label}_{last[f.label]}]"
                known[(f.label, f.key)] = placeholder
                mapping[placeholder] = text[f.start : f.end]
            out.append(text[pos : f.start])
            out.append(placeholder)
            counts[f.counted] = counts.get(f.counted, 0) + 1
            pos = f.end
        out.append(text[pos:])
        return Redaction("".join(out), mapping, counts)

    def mask(self, text: str) -> str:
        """One-way: personal data becomes `[KIND]`, and nothing is kept. For logs and events."""
        out: list[str] = []
        pos = 0
        for f in self._find(text):
            out.append(f"{text[pos : f.start]}[{f.label}]")
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    @staticmethod
    def restore(text: str, values: Mapping[str, str]) -> str:
        """Put the values back: `[KIND_N]` (any letter case) becomes its value; unknown ones stay."""
        lookup = {placeholder.upper(): value for placeholder, value in values.items()}
        return _PLACEHOLDER.sub(lambda m: lookup.get(m.group().upper(), m.group()), text)
