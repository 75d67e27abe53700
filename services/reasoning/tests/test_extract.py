"""Reading slot values out of Whisper-style transcripts (case, punctuation, "p.m.")."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from voicemesh.agent import Slot
from voicemesh.reasoning.extract import extract_slots, yes_or_no
from voicemesh.reasoning.text import number_words, tokenize, words
from voicemesh.reasoning.when import say_date, say_time

pytestmark = pytest.mark.unit

WEDNESDAY = date(2025, 3, 12)
SLOTS = {
    "party_size": Slot(type="number", prompt="How many?", aliases=["people", "guests"], min=1, max=12),
    "date": Slot(type="date", prompt="What day?", min=0, max=60),
    "time": Slot(type="time", prompt="What time?", min="12:00", max="22:30"),
    "name": Slot(type="name", prompt="What name?"),
    "seating": Slot(type="choice", prompt="Inside or outside?", choices=["inside", "terrace"]),
    "confirmed": Slot(type="yes_no", prompt="OK?"),
}


def read(text: str, expected: str | None, *candidates: str) -> dict[str, object]:
    names = list(candidates) or list(SLOTS)
    found = extract_slots(tokenize(text), SLOTS, names, expected, WEDNESDAY)
    return dict(found.values)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Four people, please.", 4),
        ("a table for two", 2),
        ("We are 6.", 6),
        ("Twenty-two.", 22),
        ("twelve", 12),
        ("Just me.", 1),
        ("The two of us.", 2),
        ("Both of us", 2),
        ("Uh, three, I think.", 3),
    ],
)
def test_party_size_when_asked(text: str, value: int) -> None:
    assert read(text, "party_size", "party_size") == {"party_size": value}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7:30 PM", time(19, 30)),
        ("7.30 p.m.", time(19, 30)),
        ("seven thirty p.m.", time(19, 30)),
        ("Seven thirty.", time(19, 30)),  # inside the slot's 12:00-22:30
        ("At eight.", time(20, 0)),
        ("8pm", time(20, 0)),
        ("Half past eight", time(20, 30)),
        ("quarter to nine", time(20, 45)),
        ("Noon.", time(12, 0)),
        ("19:45", time(19, 45)),
        ("seven o'clock in the evening", time(19, 0)),
        ("seven oh five pm", time(19, 5)),
        ("730 in the evening.", time(19, 30)),  # Whisper's digits without a colon
        ("At 1030.", time(22, 30)),
    ],
)
def test_time_when_asked(text: str, value: time) -> None:
    assert read(text, "time", "time") == {"time": value}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Today.", date(2025, 3, 12)),
        ("tonight", date(2025, 3, 12)),
        ("Tomorrow.", date(2025, 3, 13)),
        ("The day after tomorrow.", date(2025, 3, 14)),
        ("On Friday.", date(2025, 3, 14)),
        ("next Wednesday", date(2025, 3, 19)),
        ("Wednesday", date(2025, 3, 12)),
        ("March 20th", date(2025, 3, 20)),
        ("the 3rd of April", date(2025, 4, 3)),
        ("April third", date(2025, 4, 3)),
        ("On the 15th.", date(2025, 3, 15)),
        ("the 5th", date(2025, 4, 5)),  # the 5th of this month has passed
        ("March 1st", date(2026, 3, 1)),
    ],
)
def test_date(text: str, value: date) -> None:
    assert read(text, "date", "date") == {"date": value}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My name is Alice Smith.", "Alice Smith"),
        ("It's under Bob.", "Bob"),
        ("Alice.", "Alice"),
        ("um, it's Carol, thanks", "Carol"),
        ("Under the name of O'Brien", "O'Brien"),
        ("This is Dave.", "Dave"),
        ("Smith, please.", "Smith"),
    ],
)
def test_name_when_asked(text: str, value: str) -> None:
    assert read(text, "name", "name") == {"name": value}


@pytest.mark.parametrize("text", ["What?", "I don't know.", "Sorry, can you repeat that?", "Yes."])
def test_not_a_name(text: str) -> None:
    assert read(text, "name", "name") == {}


def test_several_slots_in_one_utterance() -> None:
    assert read("A table for two tomorrow at seven, under Bob.", "party_size") == {
        "party_size": 2,
        "date": date(2025, 3, 13),
        "time": time(19, 0),
        "name": "Bob",
    }
    assert read("for 8 people at 8", "party_size") == {"party_size": 8, "time": time(20, 0)}
    assert read("Four people on the terrace", "party_size") == {"party_size": 4, "seating": "terrace"}


def test_unasked_slots_need_a_cue() -> None:
    """A bare value is only taken for the slot that was asked for."""
    assert read("Seven.", None, "party_size", "time", "name") == {}
    assert read("Seven.", "time", "party_size", "time", "name") == {"time": time(19, 0)}
    assert read("Make it six people.", None, "party_size", "time", "name") == {"party_size": 6}
    assert read("Make it 8 pm.", None, "party_size", "time", "name") == {"time": time(20, 0)}
    assert read("Bob.", None, "name") == {}
    assert read("No, it's under Bob.", None, "name") == {"name": "Bob"}


def test_values_outside_min_max_are_flagged() -> None:
    found = extract_slots(tokenize("Twenty people at 11 pm"), SLOTS, list(SLOTS), "party_size", WEDNESDAY)
    assert found.values["party_size"] == 20 and found.values["time"] == time(23, 0)
    assert set(found.invalid) == {"party_size", "time"}


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes.", True),
        ("Yeah, that's right.", True),
        ("Correct.", True),
        ("Sure, go ahead.", True),
        ("Nope.", False),
        ("No, make it six people.", False),
        ("That's not right.", False),
        ("Hmm.", None),
    ],
)
def test_yes_or_no(text: str, answer: bool | None) -> None:
    assert yes_or_no(words(tokenize(text))) is answer


def test_spoken_forms_read_well() -> None:
    assert say_time(time(19, 30)) == "7:30 PM"
    assert say_time(time(19, 0)) == "7 PM"  # "7:00" would be read "seven zero zero"
    assert say_time(time(19, 5)) == "7 oh 5 PM"
    assert say_time(time(12, 0)) == "noon"
    assert say_time(time(11, 15)) == "11:15 AM"
    assert say_date(date(2025, 3, 12), WEDNESDAY) == "today"
    assert say_date(date(2025, 3, 13), WEDNESDAY) == "tomorrow"
    assert say_date(date(2025, 3, 15), WEDNESDAY) == "Saturday"
    assert say_date(date(2025, 3, 21), WEDNESDAY) == "Friday, March 21st"
    assert number_words(4) == "four" and number_words(22) == "twenty-two"


def test_date_and_compact_time_in_one_answer() -> None:
    # what Whisper tiny.en makes of "Tomorrow at seven thirty in the evening"
    found = read("Tomorrow, 730 in the evening.", "date", "date", "time")
    assert found == {"date": WEDNESDAY + timedelta(days=1), "time": time(19, 30)}
