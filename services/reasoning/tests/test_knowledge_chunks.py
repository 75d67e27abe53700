"""The chunker: deterministic, bounded, heading-aware, and losing no words."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from voicemesh.reasoning.knowledge import Chunking, Document, chunk_document, chunk_documents, read_document

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "knowledge"
FILES = [
    "bella-vista-menu.md",
    "bella-vista-policies.md",
    "clinic-faq.md",
    "clinic-directions.txt",
    "clinic-prices.pdf",
]


def random_document(seed: int) -> Document:
    """Headings, wrapped prose, list items and the odd very long sentence."""
    rng = random.Random(seed)
    vocabulary = [f"w{n}" for n in range(300)]
    lines: list[str] = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.8:
            lines += [f"{'#' * rng.randint(1, 3)} Section {rng.randint(1, 99)}", ""]
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.3:
                lines += [
                    f"- item {' '.join(rng.choices(vocabulary, k=rng.randint(1, 12)))}" for _ in range(3)
                ]
            else:
                words = []
                for _ in range(rng.randint(1, 12)):
                    words += [*rng.choices(vocabulary, k=rng.randint(1, 40 if rng.random() < 0.9 else 400))]
                    words[-1] += "."
                    words.append(rng.choice(vocabulary).capitalize())
                text = " ".join(words)
                lines += [text[i : i + 80] for i in range(0, len(text), 80)]
            lines.append("")
    return Document("random.md", "\n".join(lines))


def body_words(text: str) -> list[str]:
    return [w for line in text.split("\n") if not line.lstrip().startswith("#") for w in line.split()]


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("chunking", [Chunking(), Chunking(40, 10), Chunking(10, 0), Chunking(25, 12)])
def test_chunks_are_bounded_cover_every_word_in_order_and_are_deterministic(
    seed: int, chunking: Chunking
) -> None:
    doc = random_document(seed)
    chunks = chunk_document(doc, chunking)
    assert chunks == chunk_document(doc, chunking)
    assert [c.id for c in chunks] == [f"random.md#{n}" for n in range(len(chunks))]
    assert all(1 <= c.words <= chunking.max_words for c in chunks)
    # Every word, in order, with no gap: each chunk is a run of the document's words that
    # starts at most `overlap_words` words before the previous one ended.
    expected = body_words(doc.text)
    end = 0
    for chunk in chunks:
        words = chunk.text.split()
        starts = [
            s
            for s in range(max(0, end - chunking.overlap_words), end + 1)
            if expected[s : s + len(words)] == words
        ]
        assert starts, f"{chunk.id} does not continue the chunk before"
        end = starts[0] + len(words)
    assert end == len(expected)


def test_the_fixtures_chunk_by_heading() -> None:
    chunks = chunk_document(read_document(FIXTURES / "bella-vista-menu.md", "menu.md"))
    assert [c.heading for c in chunks][:3] == [
        "Bella Vista menu",
        "Bella Vista menu > Starters",
        "Bella Vista menu > Pasta",
    ]
    desserts = next(c for c in chunks if c.heading.endswith("Desserts"))
    assert desserts.text.split("\n") == [
        "- Tiramisu made with mascarpone and espresso: $9",
        "- Panna cotta with berries: $8",
        "- Affogato, vanilla gelato drowned in espresso: $7",
        "- Lemon sorbet (dairy free): $6",
    ]
    for name in FILES:
        assert chunk_document(read_document(FIXTURES / name, name)), name


def test_wrapped_lines_are_joined_into_sentences() -> None:
    doc = Document("faq.md", "# Hours\n\nWe open at noon and close\nat 11 PM, every day but Monday.\n")
    [chunk] = chunk_document(doc)
    assert chunk.text == "We open at noon and close at 11 PM, every day but Monday."


def test_short_lines_stay_lines_as_in_pdf_price_lists() -> None:
    doc = read_document(FIXTURES / "clinic-prices.pdf", "prices.pdf")
    [chunk] = chunk_document(doc)
    assert "\nFlu shot: $35\n" in chunk.text
    assert "These prices apply to patients without insurance. Payment is due at the visit." in chunk.text


def test_nested_headings_make_a_path_and_sibling_headings_replace_each_other() -> None:
    doc = Document("d.md", "# A\n\none.\n\n## B\n\ntwo.\n\n### C\n\nthree.\n\n## D\n\nfour.\n\n# E\n\nfive.")
    assert [(c.heading, c.text) for c in chunk_document(doc)] == [
        ("A", "one."),
        ("A > B", "two."),
        ("A > B > C", "three."),
        ("A > D", "four."),
        ("E", "five."),
    ]


def test_text_before_any_heading_has_an_empty_heading_and_empty_sections_are_dropped() -> None:
    doc = Document("d.md", "Intro line.\n\n# Empty\n\n## Full\n\nBody.")
    assert [(c.heading, c.text) for c in chunk_document(doc)] == [
        ("", "Intro line."),
        ("Empty > Full", "Body."),
    ]


def test_overlap_repeats_whole_sentences() -> None:
    sentences = [f"Sentence {n} has exactly six words." for n in range(10)]
    [first, second, *_] = chunk_document(Document("d.txt", " ".join(sentences)), Chunking(20, 6))
    assert first.text == " ".join(sentences[:3])
    assert second.text.startswith(sentences[2] + " " + sentences[3])


def test_a_sentence_longer_than_a_chunk_is_cut_into_overlapping_windows() -> None:
    words = [f"w{n}" for n in range(50)]
    chunks = chunk_document(Document("d.txt", " ".join(words)), Chunking(20, 5))
    assert [c.text.split() for c in chunks] == [words[0:20], words[15:35], words[30:50]]


@pytest.mark.parametrize(("max_words", "overlap"), [(5, 0), (20, 11), (20, -1)])
def test_bad_chunking_is_refused(max_words: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"max_words|overlap_words"):
        Chunking(max_words, overlap)


def test_chunk_documents_numbers_each_sources_chunks_from_zero_in_order() -> None:
    docs = [
        Document("a.md", "# One\n\nFirst.\n\n# Two\n\nSecond."),
        Document("b.txt", "Only one."),
    ]
    chunks = chunk_documents(docs)
    assert [(c.id, c.source, c.text) for c in chunks] == [
        ("a.md#0", "a.md", "First."),
        ("a.md#1", "a.md", "Second."),
        ("b.txt#0", "b.txt", "Only one."),
    ]
    assert chunk_documents([]) == []


def test_markdown_list_items_stay_whole_when_a_chunk_fills() -> None:
    items = [f"- Dish {n} with tomato, basil and olive oil: ${n + 10}" for n in range(12)]
    chunks = chunk_document(Document("menu.md", "# Menu\n\n" + "\n".join(items)), Chunking(30, 10))
    assert len(chunks) > 1
    for chunk in chunks:
        assert all(line in items for line in chunk.text.split("\n")), chunk.text
