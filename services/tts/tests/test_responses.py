from __future__ import annotations

import pytest

from voicemesh.tts.responses import (
    Clause,
    End,
    LimitExceeded,
    ProtocolError,
    ResponseBook,
)

pytestmark = pytest.mark.unit


def drain(book: ResponseBook) -> list[tuple[str, str]]:
    """Take every ready step, finishing responses at their end."""
    out: list[tuple[str, str]] = []
    while (step := book.next_step()) is not None:
        if isinstance(step, Clause):
            out.append((step.response.response_id, step.text))
        else:
            out.append((step.response.response_id, "<end>"))
            book.finish(step.response)
    return out


def test_responses_are_spoken_in_order_clause_by_clause() -> None:
    book = ResponseBook()
    book.add_text("r1", "Hello there. How are", now=1.0)
    book.add_text("r2", "Second one.", now=1.1)
    book.end_text("r2", now=1.2)
    assert drain(book) == [("r1", "Hello there.")]  # r1 waits for more text; r2 waits behind
    book.add_text("r1", " you?", now=1.3)
    book.end_text("r1", now=1.4)
    assert drain(book) == [
        ("r1", "How are you?"),
        ("r1", "<end>"),
        ("r2", "Second one."),
        ("r2", "<end>"),
    ]
    assert not book.done
    book.close_input()
    assert book.done


def test_cancel_drops_queued_text_and_later_deltas() -> None:
    book = ResponseBook()
    book.add_text("r1", "One. Two. Three. Four", now=0.0)
    step = book.next_step()
    assert isinstance(step, Clause) and step.text == "One."
    cancelled = book.cancel("r1")
    assert [r.response_id for r in cancelled] == ["r1"]
    assert step.response.cancelled
    book.add_text("r1", " more words.", now=0.1)  # racing the cancel: ignored
    book.end_text("r1", now=0.2)
    assert book.next_step() is None
    assert book.cancel("r1") == []  # twice is harmless


def test_cancel_before_any_text_is_remembered() -> None:
    book = ResponseBook()
    assert book.cancel("r9") == []
    book.add_text("r9", "Too late.", now=0.0)
    book.end_text("r9", now=0.0)
    assert book.next_step() is None


def test_cancel_all_cancels_every_open_response() -> None:
    book = ResponseBook()
    book.add_text("r1", "A.", now=0.0)
    book.add_text("r2", "B.", now=0.0)
    assert sorted(r.response_id for r in book.cancel("")) == ["r1", "r2"]
    assert book.open_responses() == []


def test_end_without_text_gives_an_empty_response_that_still_ends() -> None:
    book = ResponseBook()
    book.end_text("r1", now=0.0)
    step = book.next_step()
    assert isinstance(step, End) and step.response.response_id == "r1"


def test_closing_input_ends_open_responses_with_their_text() -> None:
    book = ResponseBook()
    book.add_text("r1", "No full stop at the end", now=0.0)
    book.close_input()
    assert drain(book) == [("r1", "No full stop at the end"), ("r1", "<end>")]
    assert book.done


def test_protocol_errors_name_the_problem() -> None:
    book = ResponseBook()
    with pytest.raises(ProtocolError, match=r"text\.response_id is empty"):
        book.add_text("", "x", now=0.0)
    with pytest.raises(ProtocolError, match=r"end\.response_id is empty"):
        book.end_text("", now=0.0)
    book.add_text("r1", "Hi.", now=0.0)
    book.end_text("r1", now=0.0)
    with pytest.raises(ProtocolError, match="after its end"):
        book.add_text("r1", "more", now=0.0)
    drain(book)
    with pytest.raises(ProtocolError, match="after its end"):  # finished, still remembered
        book.add_text("r1", "more", now=0.0)


def test_limits_bound_what_a_client_can_queue() -> None:
    book = ResponseBook(max_responses=2, max_pending_chars=50)
    book.add_text("r1", "a" * 30, now=0.0)
    with pytest.raises(LimitExceeded, match="50 characters"):
        book.add_text("r1", "b" * 30, now=0.0)
    book.add_text("r2", "c", now=0.0)
    with pytest.raises(LimitExceeded, match="2 responses"):
        book.add_text("r3", "d", now=0.0)


def test_first_text_time_is_kept_for_latency() -> None:
    book = ResponseBook()
    book.add_text("r1", "Hello", now=5.0)
    book.add_text("r1", " there.", now=6.0)
    assert book.open_responses()[0].first_text_at == 5.0
