"""Slot values as words that read well when spoken by tts (piper/espeak)."""

from __future__ import annotations

from datetime import date, time

from voicemesh.agent import Slot, parse_clock

from .extract import SlotValue
from .text import number_words
from .when import say_date, say_time


def say_value(slot: Slot, value: SlotValue, today: date) -> str:
    """ "four", "7:30 PM", "tomorrow", "Alice Smith", "yes"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return number_words(value)
    if isinstance(value, float):
        return number_words(int(value)) if value.is_integer() else f"{value:g}"
    if isinstance(value, time):
        return say_time(value)
    if isinstance(value, date):
        return say_date(value, today)
    return str(value)


def say_bound(slot: Slot, bound: object) -> str:
    """A slot's min or max, for its `invalid` message: "twelve", "10:30 PM"."""
    if slot.type == "time":
        clock = parse_clock(bound)
        return say_time(clock) if clock is not None else ""
    if isinstance(bound, bool) or not isinstance(bound, int | float):
        return ""
    return number_words(int(bound)) if float(bound).is_integer() else f"{bound:g}"
