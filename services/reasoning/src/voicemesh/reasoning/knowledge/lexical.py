"""Lexical retrieval: an analyzer for written and spoken English, and Okapi BM25 over
compressed postings (numpy arrays, one slice per term).

The analyzer makes a Whisper transcript and a knowledge file meet on the same terms:
lower case, accents folded ("ragù" -> "ragu"), "p.m." -> "pm", "%" -> "percent", number
words as digits ("twenty five" -> "25", "third" and "3rd" -> "3"), English stop words and
spoken fillers ("um", "uh", "you guys") dropped, and a light suffix-stripping stemmer
("bookings", "booked", "booking" -> "book"). Each step can be switched off for measuring
(bench/retrieval.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from voicemesh.reasoning.text import ORDINALS, TENS, UNITS, parse_number, parse_ordinal

STOPWORDS = frozenset(
    """
    a about above after again all also am an and any anything are as at be because been
    before being below between both but by ca could did do does doing down during each
    else even ever few for from further get got had has have having he her here hers
    herself him himself his how i if in into is it its itself just let me might more most
    must my myself no nor not now of off on once only or other our ours ourselves out over
    own same shall she should so some something such than that the their theirs them
    themselves then there these they this those through to too under until up us very
    was we were what when where whether which while who whom why will with wo would you
    your yours yourself yourselves can may
    um uh uhm umm er erm hmm mm mhm ah oh hi hey hello yeah yes yep okay ok please thanks
    thank guys like actually basically really kind sort well wondering wonder know tell
    mean gonna wanna want wanted
    """.split()
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_CONTRACTION = re.compile(r"(?<=[a-z])'(?:s|ll|re|ve|d|m)\b|(?<=[a-z])n't\b")
_AM_PM = re.compile(r"\b([ap])\.\s?m\b\.?")
_GLUED_TIME = re.compile(r"(\d{1,2})([ap]m)")
_WORD = re.compile(r"[a-z0-9]+")
_ORDINAL_DIGITS = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_VOWEL = re.compile(r"[aeiouy]")
_DOUBLE = re.compile(r"([bdfgklmnprt])\1$")
# Words that may start a spoken number (parse_number also reads "a hundred", "a dozen").
_NUMBER_STARTS = frozenset(UNITS) | frozenset(TENS) | frozenset(ORDINALS) | {"a"}


@dataclass(frozen=True)
class Analyzer:
    """Text -> index terms. The defaults are what the product uses."""

    numbers: bool = True
    stopwords: bool = True
    stem: bool = True

    def __call__(self, text: str) -> list[str]:
        words = _words(text)
        if self.numbers:
            words = _numbers_as_digits(words)
        if self.stopwords:
            words = [w for w in words if w not in STOPWORDS]
        if self.stem:
            words = [stem(w) for w in words]
        return words


def _words(text: str) -> list[str]:
    text = text.translate(_APOSTROPHES).lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    if "'" in text:
        text = _CONTRACTION.sub("", text).replace("'", "")
    if "m." in text or ".m" in text:
        text = _AM_PM.sub(lambda m: f" {m.group(1)}m ", text)
    words = _WORD.findall(text.replace("%", " percent "))
    if any(w[-1] == "m" and w[0].isdigit() for w in words):  # "7pm" -> "7", "pm"
        split: list[str] = []
        for w in words:
            glued = _GLUED_TIME.fullmatch(w)
            split += glued.groups() if glued else (w,)
        words = split
    return words


def _numbers_as_digits(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word[0].isdigit():
            digits = _ORDINAL_DIGITS.match(word)
            out.append(digits.group(1) if digits else word)
            i += 1
            continue
        found = (parse_ordinal(words, i) or parse_number(words, i)) if word in _NUMBER_STARTS else None
        if found is None:
            out.append(word)
            i += 1
            continue
        value, i = found
        out.append(str(value))
    return out


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light English stemmer: plural and verb endings, "-ation", a final "e" (so "make"
    and "making" meet), and a doubled final consonant ("booked", "planned")."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            word = word[: -len(suffix)] + replacement
            break
    else:
        if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
            word = word[:-1]
    for suffix in ("ations", "ation", "ing", "ed"):
        base = word[: -len(suffix)]
        if word.endswith(suffix) and len(base) >= 3 and _VOWEL.search(base):
            word = _DOUBLE.sub(r"\1", base)
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


class Bm25:
    """Okapi BM25 over a fixed set of documents (each a list of terms). Each term's
    postings are a slice of two flat arrays (document numbers, and the term's precomputed
    BM25 weight in that document), so a query adds a few numpy slices into one score
    vector."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.size = len(documents)
        vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        doc_ids: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(self.size, dtype=np.float32)
        for d, terms in enumerate(documents):
            lengths[d] = len(terms)
            for term, count in Counter(terms).items():
                term_ids.append(vocabulary.setdefault(term, len(vocabulary)))
                doc_ids.append(d)
                counts.append(count)
        self.vocabulary = vocabulary
        tids = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(tids, kind="stable")
        self._docs = np.asarray(doc_ids, dtype=np.int32)[order]
        tf = np.asarray(counts, dtype=np.float32)[order]
        df = np.bincount(tids, minlength=len(vocabulary))
        self._starts = np.concatenate(([0], np.cumsum(df))).astype(np.int64)
        idf = np.log1p((self.size - df + 0.5) / (df + 0.5)).astype(np.float32)
        avg = float(lengths.mean()) if self.size and lengths.sum() else 1.0
        norm = k1 * (1 - b + b * lengths[self._docs] / avg)
        self._weights = (np.repeat(idf, df) * tf * (k1 + 1) / (tf + norm)).astype(np.float32)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """One BM25 score per document (float32); 0 where no term matches."""
        scores = np.zeros(self.size, dtype=np.float32)
        for term, count in Counter(terms).items():
            t = self.vocabulary.get(term)
            if t is None:
                continue
            start, end = self._starts[t], self._starts[t + 1]
            scores[self._docs[start:end]] += count * self._weights[start:end]
        return scores

    @property
    def nbytes(self) -> int:
        """Bytes held in the postings arrays (the vocabulary dict not counted)."""
        return self._docs.nbytes + self._weights.nbytes + self._starts.nbytes


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """The indices of the `k` highest positive scores, best first; ties by index."""
    if k <= 0 or scores.size == 0:
        return []
    if scores.size > k:
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        candidates = np.flatnonzero(scores >= max(kth, np.finfo(np.float32).tiny))
    else:
        candidates = np.flatnonzero(scores > 0)
    ranked = candidates[np.lexsort((candidates, -scores[candidates]))]
    return [int(i) for i in ranked[:k]]
