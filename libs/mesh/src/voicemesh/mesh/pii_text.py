"""E-mail addresses and UK National Insurance numbers, written or spoken.

E-mail, written: `local@domain.tld`, any top-level domain.

E-mail, spoken or mixed: "john dot smith at example dot com", "j_smith42 at gmail.com",
"john @ example dot com". The local part is words joined by "dot", "underscore", "dash",
"hyphen" (or `.`, `_`, `-` with no space around them); then "at" (or `@`); then domain
labels joined by "dot" (or `.`) ending in a common top-level domain (`_TLDS`). Because "at"
is an ordinary word ("I booked at expedia dot com"), a spoken "at" counts only when the
local part has a letter and one of these holds: the local part has a separator or a digit
("john dot smith", "smith42"), the domain is a common mail provider ("gmail", "outlook",
...), or "email"/"e-mail"/"address" was said just before. A pronoun ("me at", "us at") is
never a local part. Only the last word before "at" is taken, so in
"john smith at gmail dot com" the address is "smith at gmail dot com".

NINO: two prefix letters (HMRC's allowed letters; not BG, GB, KN, NK, NT, TN, ZZ), six
digits written or spoken, a suffix A-D: "AB 12 34 56 C", "A B one two three four five six
C". The letters must be capitals, as the transcriber writes spelled-out letters; "ab 12 34
56 c" is not taken, so that ordinary words are never read as a prefix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from voicemesh.mesh.pii_kinds import Hit, PiiKind
from voicemesh.mesh.pii_numbers import SPOKEN_DIGIT, digits_of

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_WRITTEN = re.compile(
    rf"(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]*[A-Za-z0-9_])?"
    rf"@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,24}}(?![A-Za-z0-9-])"
)

_TLDS = (
    "com net org edu gov mil int io co uk us ca au nz ie de fr es it nl be ch at se no dk fi pl pt in"
    " info biz me ai app dev email online"
).split()
_PROVIDERS = frozenset(
    "gmail googlemail yahoo ymail hotmail outlook live msn icloud me mac aol proton protonmail"
    " gmx yandex zoho comcast verizon att btinternet sky fastmail hey".split()
)
_PRONOUNS = "me|us|him|her|them|you|it"
_WORD = r"[A-Za-z0-9][A-Za-z0-9%+]*"
# A written `.` `_` `-` has no spaces around it ("home. In the evening" is no domain).
_SEP = r"(?:[._-]|\s+(?:dot|underscore|dash|hyphen|period)\s+)"
_DOT = r"(?:\.|\s+dot\s+)"
_DLABEL = r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
_MAX_PARTS = 5  # separators in a spoken local part or domain: bounds the work per position
_SPOKEN = re.compile(
    rf"(?<![A-Za-z0-9._%+-])(?!(?:{_PRONOUNS})\s+at\s)"
    rf"(?P<local>{_WORD}(?:{_SEP}{_WORD}){{0,{_MAX_PARTS}}})"
    rf"(?P<at>\s*@\s*|\s+at\s+)"
    rf"(?P<domain>{_DLABEL}(?:{_DOT}{_DLABEL}){{0,{_MAX_PARTS}}}{_DOT}(?:{'|'.join(_TLDS)}))(?![A-Za-z0-9-])",
    re.IGNORECASE,
)
_CONTEXT = re.compile(r"\b(?:e-?mail|address)\b", re.IGNORECASE)
_CONTEXT_CHARS = 40  # how far back "email" / "address" may have been said

_NINO = re.compile(
    rf"(?<![A-Za-z0-9])(?P<prefix>[A-CEGHJ-PR-TW-Z][ .-]{{0,2}}[A-CEGHJ-NPR-TW-Z])"
    rf"(?P<digits>(?:[ ,.-]{{0,2}}{SPOKEN_DIGIT}){{6}})"
    rf"[ ,-]{{0,2}}(?P<suffix>[A-D])(?![A-Za-z0-9])"
)
_NINO_BANNED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def email_key(value: str) -> str:
    """One spelling for one address: "John Dot Smith at Example dot com" -> "john.smith@example.com"."""
    v = value.lower()
    v = re.sub(r"\s+at\s+", "@", v)
    v = re.sub(r"\s+(?:dot|period)\s+", ".", v)
    v = re.sub(r"\s+underscore\s+", "_", v)
    v = re.sub(r"\s+(?:dash|hyphen)\s+", "-", v)
    return re.sub(r"\s+", "", v)


def nino_key(value: str) -> str:
    """One spelling for one NINO: "A B one two three four five six C" -> "AB123456C"."""
    m = _NINO.search(value)
    return _nino_key(m) if m else value


def _nino_key(m: re.Match[str]) -> str:
    prefix = re.sub(r"[ .-]", "", m.group("prefix"))
    return f"{prefix}{digits_of(m.group('digits'))}{m.group('suffix')}"


def _overlaps(start: int, end: int, taken: Sequence[tuple[int, int]]) -> bool:
    return any(start < t_end and t_start < end for t_start, t_end in taken)


def _spoken_ok(text: str, m: re.Match[str]) -> bool:
    if "@" in m.group("at"):
        return True
    local = m.group("local")
    if not re.search("[A-Za-z]", local):
        return False  # "a table for 4 at opentable dot com"
    if re.search(rf"{_SEP}|[0-9]", local, re.IGNORECASE):
        return True
    if re.split(_DOT, m.group("domain").lower())[0] in _PROVIDERS:
        return True
    return _CONTEXT.search(text, max(0, m.start() - _CONTEXT_CHARS), m.start()) is not None


def find_emails(text: str, blocked: Sequence[tuple[int, int]] = ()) -> list[Hit]:
    """E-mail addresses in `text`, written or spoken, in text order."""
    taken = list(blocked)
    hits: list[Hit] = []
    for m in _WRITTEN.finditer(text):
        if not _overlaps(m.start(), m.end(), taken):
            hits.append(Hit(m.start(), m.end(), PiiKind.EMAIL, email_key(m.group())))
            taken.append((m.start(), m.end()))
    pos = 0
    while (m := _SPOKEN.search(text, pos)) is not None:
        if _overlaps(m.start(), m.end(), taken) or not _spoken_ok(text, m):
            pos = m.start() + 1
            continue
        hits.append(Hit(m.start(), m.end(), PiiKind.EMAIL, email_key(m.group())))
        taken.append((m.start(), m.end()))
        pos = m.end()
    return sorted(hits)


def find_ninos(text: str, blocked: Sequence[tuple[int, int]] = ()) -> list[Hit]:
    """UK National Insurance numbers in `text`, in text order."""
    hits: list[Hit] = []
    pos = 0
    while (m := _NINO.search(text, pos)) is not None:
        prefix = re.sub(r"[ .-]", "", m.group("prefix"))
        if prefix in _NINO_BANNED or _overlaps(m.start(), m.end(), blocked):
            pos = m.start() + 1
            continue
        hits.append(Hit(m.start(), m.end(), PiiKind.NINO, _nino_key(m)))
        pos = m.end()
    return hits
