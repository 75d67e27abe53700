"""The analyzer and BM25: spoken and written text meet on the same terms, and ranking
behaves as BM25 should, checked against a plain reference on a 10,000-chunk corpus."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from voicemesh.reasoning.knowledge import Analyzer, Bm25, Chunk, KnowledgeIndex, stem, top_k

pytestmark = pytest.mark.unit

analyze = Analyzer()


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("twenty five", "$25"),
        ("twenty-five", "25"),
        ("a dozen oysters", "12 oysters"),
        ("the third floor", "the 3rd floor"),
        ("seven thirty p.m.", "7:30 PM"),
        ("at 7pm", "at 7 p.m."),
        ("eighteen percent", "18%"),
        ("Uh, do you guys have bookings?", "booking"),
        ("we booked", "book"),
        ("cancellations", "cancelled"),
        ("Ragu", "ragù"),
        ("the children's menu", "children menu"),
        ("I'd like a reservation", "reserved"),
    ],
)
def test_spoken_and_written_forms_meet(spoken: str, written: str) -> None:
    assert analyze(spoken) == analyze(written)


def test_fillers_and_stop_words_alone_leave_nothing() -> None:
    assert analyze("Um, yeah, hi. Okay, so, uh, I was wondering, could you tell me...") == []


def test_each_step_can_be_switched_off() -> None:
    text = "Bookings for twenty guests"
    assert Analyzer()(text) == ["book", "20", "guest"]
    assert Analyzer(stem=False)(text) == ["bookings", "20", "guests"]
    assert Analyzer(stopwords=False)(text) == ["book", "for", "20", "guest"]
    assert Analyzer(numbers=False)(text) == ["book", "twenty", "guest"]


@pytest.mark.parametrize(
    ("words", "common"),
    [
        (["park", "parking", "parked", "parks"], "park"),
        (["dish", "dishes"], "dish"),
        (["plan", "planned", "planning", "plans"], "plan"),
        (["vaccination", "vaccinations"], "vaccin"),
        (["close", "closed", "closing", "closes"], "clos"),
    ],
)
def test_stemmer_groups_word_forms(words: list[str], common: str) -> None:
    assert {stem(w) for w in words} == {common}


def test_rarer_terms_weigh_more_and_longer_documents_less() -> None:
    docs = [["pizza", "oven"], ["pizza", "vegan"], ["pizza"], ["pizza", "vegan", *["filler"] * 20]]
    scores = Bm25(docs).scores(["vegan", "pizza"])
    assert scores[1] > scores[3] > scores[0] > 0  # "vegan" is rarer than "pizza"; 3 is long
    assert scores[0] == scores[2] or scores[2] > scores[0]  # same terms, 2 is shorter


def test_unknown_terms_score_nothing_and_repeated_query_terms_count() -> None:
    bm25 = Bm25([["a", "b"], ["b", "c"]])
    assert not bm25.scores(["zzz"]).any()
    once, twice = bm25.scores(["a", "c"]), bm25.scores(["a", "a", "c"])
    assert once[0] == once[1] and twice[0] > twice[1]


def test_top_k_is_best_first_ties_by_index_and_drops_zero_scores() -> None:
    scores = np.array([0.5, 2.0, 0.0, 2.0, 1.0, 0.5], dtype=np.float32)
    assert top_k(scores, 3) == [1, 3, 4]
    assert top_k(scores, 5) == [1, 3, 4, 0, 5]
    assert top_k(scores, 10) == [1, 3, 4, 0, 5]
    assert top_k(np.zeros(4, dtype=np.float32), 3) == []
    assert top_k(scores, 0) == []


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="k1"):
        Bm25([["a"]], k1=-1)
    with pytest.raises(ValueError, match="b="):
        Bm25([["a"]], b=1.5)
    index = KnowledgeIndex.build([Chunk("d#0", "d", "", "text")])
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search("text", k=0)
    with pytest.raises(ValueError, match="two chunks have the id 'd#0'"):
        KnowledgeIndex.build([Chunk("d#0", "d", "", "a"), Chunk("d#0", "d", "", "b")])


def test_empty_index_finds_nothing() -> None:
    assert KnowledgeIndex.build([]).search("anything") == []


def test_search_returns_hits_with_text_source_heading_and_score() -> None:
    chunks = [
        Chunk("menu#0", "menu.md", "Menu > Pizza", "Vegan marinara with garlic: $13"),
        Chunk("menu#1", "menu.md", "Menu > Desserts", "Tiramisu: $9"),
        Chunk("hours#0", "hours", "", "Open every day from noon."),
    ]
    index = KnowledgeIndex.build(chunks)
    [hit] = index.search("Do you have any vegan pizza?")
    assert (hit.text, hit.source, hit.heading, hit.chunk.id) == (
        chunks[0].text,
        "menu.md",
        "Menu > Pizza",
        "menu#0",
    )
    assert hit.score > 0
    # The heading is searched too.
    assert [h.chunk.id for h in index.search("what desserts are there")] == ["menu#1"]
    assert index.search("um, yeah") == []


# ---- 10,000 chunks: the index against a plain, slow BM25 ---------------------------------


def reference_bm25(
    docs: list[list[str]], k1: float = 1.2, b: float = 0.75
) -> Callable[[list[str]], list[float]]:
    """BM25 as the textbook writes it, one document at a time."""
    n = len(docs)
    avg = sum(len(d) for d in docs) / n
    tfs = [Counter(d) for d in docs]
    df = Counter(t for tf in tfs for t in tf)

    def scores(query: list[str]) -> list[float]:
        out = []
        for d, tf in zip(docs, tfs, strict=True):
            score = 0.0
            for term, count in Counter(query).items():
                if tf[term]:
                    idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                    score += count * idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(d) / avg))
            out.append(score)
        return out

    return scores


def test_ten_thousand_chunks_rank_as_the_reference_does() -> None:
    rng = random.Random(11)
    vocabulary = [f"term{n}" for n in range(3_000)]
    cumulative = list(itertools.accumulate(1 / (r + 1) for r in range(len(vocabulary))))  # Zipf-like
    chunks = [
        Chunk(
            f"s{i // 100}#{i % 100}",
            f"s{i // 100}",
            "",
            " ".join(rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(20, 120))),
        )
        for i in range(10_000)
    ]
    # Plant one unique word in a few chunks: searching it must find exactly that chunk first.
    planted = {137: "zebra", 4_242: "quokka", 9_999: "axolotl"}
    chunks = [
        Chunk(c.id, c.source, c.heading, f"{c.text} {planted[i]}") if i in planted else c
        for i, c in enumerate(chunks)
    ]
    analyzer = Analyzer(numbers=False, stopwords=False, stem=False)
    index = KnowledgeIndex.build(chunks, analyzer)
    assert len(index) == 10_000
    for i, word in planted.items():
        assert index.search(f"{word} term5 term77")[0].chunk.id == chunks[i].id

    docs = [analyzer(f"{c.heading}\n{c.text}") for c in chunks]
    reference = reference_bm25(docs)
    position = {c.id: n for n, c in enumerate(chunks)}
    for _ in range(5):
        query = [
            *rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(1, 6)),
            rng.choice(vocabulary),
        ]
        expected = reference(query)
        best = sorted(range(len(docs)), key=lambda d: (-expected[d], d))[:3]
        hits = index.search(" ".join(query), k=3)
        # Same scores (float32 against float64); the same chunks unless two scores all but tie.
        for hit, d in zip(hits, best, strict=True):
            assert hit.score == pytest.approx(expected[d], rel=1e-4)
            assert expected[position[hit.chunk.id]] == pytest.approx(expected[d], rel=1e-4)
