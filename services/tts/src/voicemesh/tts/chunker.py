"""Clause chunking: cut a stream of text deltas into clauses worth speaking on their own.

piper synthesizes a whole sentence per model call, so first audio waits for the first piece
of text handed to it. `ClauseChunker` hands out pieces early: at sentence ends (. ! ? …),
at line breaks, and at clause punctuation (, ; : —) once the clause is long enough. The
first clause of a response may be short (`min_first_words`) so the caller hears something
soon; later clauses are longer (`min_words`) so the speech keeps its natural phrasing. Text
without any punctuation is cut at a word boundary after `max_words`.

It never cuts inside a number ("3.5", "7:30", "1,000"), after a common abbreviation ("Dr.",
"e.g.", "U.S."), or after a list number at the start of a clause ("1. Milk").

Decisions depend only on the text, never on where the deltas were split: a punctuation
mark waits for the character(s) after it before it is decided. Clauses come out with
whitespace trimmed and collapsed to single spaces; nothing else is added or removed.
"""

from __future__ import annotations

SENTENCE_END = ".!?…"
CLAUSE_MARKS = ",;:"
DASHES = "—"
SPACED_DASHES = "–"  # an en dash separates clauses only with a space after it ("1–2" is a range)
CLOSERS = "\"')]}”’»"

# Words (lowercase, without the final dot) after which "." does not end a sentence.
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "ft",
        "vs",
        "approx",
        "dept",
        "fig",
        "lt",
        "sgt",
        "capt",
        "gov",
        "vol",
        "ave",
        "blvd",
        "rd",
        "apt",
        "jan",
        "feb",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "tue",
        "thu",
        "fri",
        "tel",
        "ext",
    }
)


class ClauseChunker:
    """Pure: `push(delta)` returns the clauses that are ready; `flush()` returns the rest."""

    def __init__(self, min_first_words: int = 3, min_words: int = 6, max_words: int = 30) -> None:
        if not 1 <= min_first_words <= max_words or not 1 <= min_words <= max_words:
            raise ValueError(
                f"need 1 <= min words <= max_words, got {min_first_words}/{min_words}/{max_words}"
            )
        self.min_first_words = min_first_words
        self.min_words = min_words
        self.max_words = max_words
        self._buffer = ""
        self._scan = 0  # buffer[:_scan] holds no cut point (decided already)
        self._emitted = 0

    @property
    def pending(self) -> str:
        """Text received but not yet handed out."""
        return self._buffer

    @property
    def emitted(self) -> int:
        """How many clauses were handed out so far."""
        return self._emitted

    def push(self, delta: str) -> list[str]:
        """Add a text delta; return the clauses it completes (possibly none)."""
        self._buffer += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                return out
            clause = _normalise(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
            self._scan = 0
            if clause:
                out.append(clause)
                self._emitted += 1

    def flush(self) -> list[str]:
        """End of text: return what is left as a final clause (if any) and reset."""
        clause = _normalise(self._buffer)
        self._buffer = ""
        self._scan = 0
        if not clause:
            return []
        self._emitted += 1
        return [clause]

    # --- decisions -------------------------------------------------------------------------

    def _min_words(self) -> int:
        return self.min_first_words if self._emitted == 0 else self.min_words

    def _find_cut(self) -> int | None:
        """The end of the next clause in the buffer, or None until more text arrives."""
        buf = self._buffer
        i = self._scan
        while i < len(buf):
            ch = buf[i]
            decision: int | bool | None
            if ch in SENTENCE_END:
                decision = self._sentence_end(i)
            elif ch in CLAUSE_MARKS or ch in SPACED_DASHES:
                decision = self._clause_mark(i, need_space=True)
            elif ch in DASHES:
                decision = self._clause_mark(i, need_space=False)
            elif ch == "\n":
                decision = i + 1 if buf[:i].strip() else False
            elif ch.isspace():
                decision = self._word_limit(i)
            else:
                decision = False
            if decision is None:  # cannot decide yet: wait here for more text
                self._scan = i
                return None
            if decision is not False:
                return decision
            i += 1
        self._scan = i
        return None

    def _sentence_end(self, i: int) -> int | bool | None:
        """After a run like `?!`, `..."` or `.)`: a cut if whitespace follows."""
        buf = self._buffer
        j = i
        while j < len(buf) and (buf[j] in SENTENCE_END or buf[j] in CLOSERS):
            j += 1
        if j == len(buf):
            return None
        if not buf[j].isspace():
            return False  # "3.5", "e.g", "example.com", "?!x"
        if buf[i] == "." and j == i + 1 and self._dot_is_not_an_end(i):
            return False
        return j

    def _dot_is_not_an_end(self, i: int) -> bool:
        word = _word_before(self._buffer, i)
        if not word:
            return False
        bare = word.lstrip("\"'([{“‘«")
        if bare.lower() in ABBREVIATIONS:
            return True
        if "." in bare:  # "e.g", "U.S", "a.m"
            return True
        if len(bare) == 1 and bare.isalpha() and bare.isupper() and bare != "I":  # initials
            return True
        # "1. Milk": a list number that starts the clause
        return bare.isdigit() and len(bare) <= 2 and self._buffer[: i - len(bare)].strip() == ""

    def _clause_mark(self, i: int, need_space: bool) -> int | bool | None:
        buf = self._buffer
        if i + 1 == len(buf):
            return None
        if need_space and not buf[i + 1].isspace():
            return False  # "1,000", "7:30", "1–2"
        if len(buf[: i + 1].split()) < self._min_words():
            return False
        return i + 1

    def _word_limit(self, i: int) -> int | bool | None:
        """Whitespace after `max_words` words: a cut once the next word has begun."""
        buf = self._buffer
        if len(buf[:i].split()) < self.max_words:
            return False
        j = i
        while j < len(buf) and buf[j].isspace():
            j += 1
        if j == len(buf):
            return None
        return i


def _word_before(text: str, end: int) -> str:
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end]


def _normalise(text: str) -> str:
    return " ".join(text.split())
