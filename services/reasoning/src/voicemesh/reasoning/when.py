"""Dates and times in spoken English: find them in transcript words, and say them back.

"tomorrow", "on Friday", "next friday", "March 3rd", "the 3rd of March", "the 15th";
"7:30 pm", "seven thirty p.m.", "half past seven", "quarter to eight", "at 7", "noon".
Pure functions: "today" is always a parameter.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, time, timedelta

from .text import TENS, UNITS, parse_number, parse_ordinal

WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9

_PM_HINTS = ("pm", "evening", "tonight", "night", "afternoon", "dinner")
_AM_HINTS = ("am", "morning", "breakfast")
_TIME_PREFIXES = ("at", "around", "about", "by", "for")


@dataclass(frozen=True)
class Span:
    """A value found in the words `seq[start:end]`."""

    value: object
    start: int
    end: int


def find_date(seq: list[str], free: list[bool], today: date) -> Span | None:
    """The first date expression in the free words of `seq`."""
    for i in range(len(seq)):
        if not free[i]:
            continue
        found = _date_at(seq, i, today)
        if found is not None and all(free[found.start : found.end]):
            return found
    return None


def _date_at(seq: list[str], i: int, today: date) -> Span | None:
    w = seq[i]
    start = i - 1 if i > 0 and seq[i - 1] in ("on", "for", "this", "next", "coming") else i
    if w in ("today", "tonight"):
        return Span(today, start, i + 1)
    if w == "tomorrow":
        if i >= 2 and seq[i - 2 : i] == ["day", "after"]:
            first = i - 3 if i >= 3 and seq[i - 3] == "the" else i - 2
            return Span(today + timedelta(days=2), first, i + 1)
        return Span(today + timedelta(days=1), start, i + 1)
    if w == "yesterday":
        return Span(today - timedelta(days=1), start, i + 1)
    if w in WEEKDAYS:
        ahead = (WEEKDAYS[w] - today.weekday()) % 7
        if ahead == 0 and i > 0 and seq[i - 1] == "next":
            ahead = 7
        return Span(today + timedelta(days=ahead), start, i + 1)
    if w in MONTHS:  # "march 3rd", "march the 3rd", "march 3"
        j = i + 1 + (i + 1 < len(seq) and seq[i + 1] == "the")
        day = parse_ordinal(seq, j) or _day_number(seq, j)
        if day is not None:
            return _month_day(today, MONTHS[w], day[0], start, day[1])
        return None
    first = i - 1 if i > 0 and seq[i - 1] == "the" else i
    if first > 0 and seq[first - 1] in ("on", "for"):
        first -= 1
    day = parse_ordinal(seq, i) or (_day_number(seq, i) if first == i else None)
    if day is None:
        return None
    _, j = day
    if j < len(seq) and seq[j] == "of":
        j += 1
    if j < len(seq) and seq[j] in MONTHS:  # "3rd of march", "3 march"
        return _month_day(today, MONTHS[seq[j]], day[0], first, j + 1)
    if first < i and parse_ordinal(seq, i) is not None:  # "the 15th"
        return _next_day_of_month(today, day[0], first, day[1])
    return None


def _day_number(seq: list[str], i: int) -> tuple[int, int] | None:
    found = parse_number(seq, i)
    return found if found is not None and 1 <= found[0] <= 31 else None


def _month_day(today: date, month: int, day: int, start: int, end: int) -> Span | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= today:
            return Span(candidate, start, end)
    return None


def _next_day_of_month(today: date, day: int, start: int, end: int) -> Span | None:
    year, month = today.year, today.month
    for _ in range(13):
        try:
            candidate = date(year, month, day)
        except ValueError:
            candidate = None
        if candidate is not None and candidate >= today:
            return Span(candidate, start, end)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def find_time(
    seq: list[str],
    free: list[bool],
    lenient: bool,
    earliest: time | None = None,
    latest: time | None = None,
    not_before: frozenset[str] = frozenset(),
) -> Span | None:
    """The first time-of-day in the free words. A bare hour ("seven") counts only when
    `lenient` (the caller was just asked for a time) or after "at"/"around", and never
    right before a word of `not_before` ("four people"). An hour without am/pm is read
    inside [earliest, latest] when that decides it."""
    pm_hint = any(w in _PM_HINTS for w in seq)
    am_hint = any(w in _AM_HINTS for w in seq)
    for bare_hour_ok in (False, True) if lenient else (False,):
        for i in range(len(seq)):
            if not free[i]:
                continue
            found = _time_at(seq, i, bare_hour_ok)
            if found is None or not all(free[found.start : found.end]):
                continue
            if found.end < len(seq) and seq[found.end] in not_before:
                continue
            hour, minute, meridiem = found.value  # type: ignore[misc]
            if meridiem is None:
                meridiem = "pm" if pm_hint and not am_hint else ("am" if am_hint else None)
            return Span(_resolve(hour, minute, meridiem, earliest, latest), found.start, found.end)
    return None


def _time_at(seq: list[str], i: int, lenient: bool) -> Span | None:
    w = seq[i]
    start = i - 1 if i > 0 and seq[i - 1] in _TIME_PREFIXES else i
    prefixed = start < i and seq[start] != "for"
    if w in ("noon", "midday"):
        return Span((12, 0, "pm"), start, i + 1)
    if w == "midnight":
        return Span((0, 0, "am"), start, i + 1)
    if w in ("half", "quarter") and i + 1 < len(seq) and seq[i + 1] in ("past", "to", "after"):
        hour = _hour_at(seq, i + 2)
        if hour is None:
            return None
        h, end = hour
        minute = 30 if w == "half" else 15
        if seq[i + 1] == "to":
            h, minute = (h - 1) % 24 or 12, 45
        return _with_suffix(seq, h, minute, start, end, cue=True)
    if w == "half" and (hour := _hour_at(seq, i + 1)) is not None:  # "half seven"
        return _with_suffix(seq, hour[0], 30, start, hour[1], cue=True)
    if ":" in w:
        hh, _, mm = w.partition(":")
        if hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60:
            return _with_suffix(seq, int(hh), int(mm), start, i + 1, cue=True)
        return None
    if w.isdigit() and len(w) in (3, 4):  # Whisper often writes "7:30" as "730"
        h, m = int(w[:-2]), int(w[-2:])
        if h < 24 and m < 60:
            return _with_suffix(seq, h, m, start, i + 1, cue=prefixed or lenient)
        return None
    hour = _hour_at(seq, i)
    if hour is None:
        return None
    h, j = hour
    minute = 0
    minutes = _minutes_at(seq, j)
    if minutes is not None:
        minute, j = minutes
    return _with_suffix(seq, h, minute, start, j, cue=prefixed or lenient or minutes is not None)


def _with_suffix(seq: list[str], h: int, minute: int, start: int, end: int, cue: bool) -> Span | None:
    """Read "o'clock", "am"/"pm", "in the evening", ... after a time; None without a cue."""
    meridiem: str | None = None
    j = end
    if j < len(seq) and seq[j] in ("o'clock", "oclock"):
        j, cue = j + 1, True
    if j < len(seq) and seq[j] in ("am", "pm"):
        meridiem, j, cue = seq[j], j + 1, True
    elif seq[j : j + 3] in (["in", "the", "evening"], ["in", "the", "afternoon"]):
        meridiem, j, cue = "pm", j + 3, True
    elif seq[j : j + 3] == ["in", "the", "morning"]:
        meridiem, j, cue = "am", j + 3, True
    elif seq[j : j + 2] == ["at", "night"]:
        meridiem, j, cue = "pm", j + 2, True
    if not cue:
        return None
    if meridiem is not None and not 1 <= h <= 12:
        meridiem = None  # "19:30 pm": the 24-hour reading wins
    return Span((h, minute, meridiem), start, j)


def _hour_at(seq: list[str], i: int) -> tuple[int, int] | None:
    if i >= len(seq):
        return None
    w = seq[i]
    if w.isdigit() and len(w) <= 2 and int(w) < 24:
        return int(w), i + 1
    if w in UNITS and 1 <= UNITS[w] <= 12 and w != "oh":
        return UNITS[w], i + 1
    return None


def _minutes_at(seq: list[str], i: int) -> tuple[int, int] | None:
    """Spoken minutes after an hour: "thirty", "forty five", "oh five", "15"."""
    if i >= len(seq):
        return None
    w = seq[i]
    if w in ("oh", "o") and i + 1 < len(seq) and seq[i + 1] in UNITS and 0 < UNITS[seq[i + 1]] < 10:
        return UNITS[seq[i + 1]], i + 2
    if w.isdigit() and len(w) == 2 and int(w) < 60:
        return int(w), i + 1
    if w in TENS or (w in UNITS and UNITS[w] >= 10):
        found = parse_number(seq, i)
        if found is not None and found[0] < 60:
            return found
    return None


def _resolve(
    hour: int, minute: int, meridiem: str | None, earliest: time | None, latest: time | None
) -> time:
    if meridiem == "pm" and hour < 12:
        return time(hour + 12, minute)
    if meridiem == "am":
        return time(0 if hour == 12 else hour, minute)
    if hour > 12 or hour == 0:
        return time(hour, minute)
    readings = [time(hour % 12, minute), time(hour % 12 + 12, minute)]
    if hour == 12:
        readings.reverse()
    if earliest is not None or latest is not None:
        inside = [t for t in readings if (earliest or time.min) <= t <= (latest or time.max)]
        if inside:
            return inside[0]
    return readings[1] if 1 <= hour <= 6 else readings[0]


def say_time(value: time) -> str:
    """How piper reads a time well: "7 PM", "7:30 PM", "7 oh 5 PM", "noon", "midnight"
    ("7:00" would be read "seven zero zero")."""
    if value == time(12, 0):
        return "noon"
    if value == time(0, 0):
        return "midnight"
    hour = value.hour % 12 or 12
    suffix = "PM" if value.hour >= 12 else "AM"
    if value.minute == 0:
        return f"{hour} {suffix}"
    if value.minute < 10:
        return f"{hour} oh {value.minute} {suffix}"
    return f"{hour}:{value.minute:02d} {suffix}"


def say_date(value: date, today: date) -> str:
    """ "today", "tomorrow", "Friday" (within a week), else "Friday, March 14th"."""
    from .text import ordinal_suffix

    ahead = (value - today).days
    if ahead == 0:
        return "today"
    if ahead == 1:
        return "tomorrow"
    weekday = calendar.day_name[value.weekday()]
    if 1 < ahead < 7:
        return weekday
    return f"{weekday}, {calendar.month_name[value.month]} {ordinal_suffix(value.day)}"
