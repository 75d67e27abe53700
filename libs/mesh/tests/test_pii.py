"""PII redaction on transcripts as Whisper writes them: numbers read aloud, spoken e-mails,
and the ordinary booking-call speech that must come through untouched."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.mesh.pii import PiiKind, Redaction, Redactor
from voicemesh.mesh.pii_numbers import DIGIT_WORDS, luhn_valid

pytestmark = pytest.mark.unit

PLACEHOLDER = re.compile(r"\[([A-Z_]+?)_\d+\]")

POSITIVE = [
    # phone, written
    ("call me on 212 555 0187", "call me on [PHONE_1]"),
    ("212, 555, 0187", "[PHONE_1]"),
    ("2125550187", "[PHONE_1]"),
    ("(212) 555-0187", "[PHONE_1]"),
    ("+1 212 555 0187", "[PHONE_1]"),
    ("+1 (212) 555-0187", "[PHONE_1]"),
    ("212.555.0187", "[PHONE_1]"),
    ("1-800-555-0199", "[PHONE_1]"),
    ("tel: 212-555-0187", "tel: [PHONE_1]"),
    ("it's 555-0187", "it's [PHONE_1]"),
    ("+44 20 7946 0958", "[PHONE_1]"),
    ("020 7946 0958", "[PHONE_1]"),
    ("07700 900123", "[PHONE_1]"),
    ("My number is 212 555 0187. 4 people.", "My number is [PHONE_1]. 4 people."),
    ("call 212 555 0187 or 646 555 0100", "call [PHONE_1] or [PHONE_2]"),
    ("212 555 0187, 646 555 0100", "[PHONE_1], [PHONE_2]"),
    ("212 555 0187 at 7:30", "[PHONE_1] at 7:30"),
    # phone, spoken or mixed
    ("two one two five five five zero one eight seven", "[PHONE_1]"),
    ("my number is two one two, five five five, oh one eight seven", "my number is [PHONE_1]"),
    ("two one two, 555, oh one eight seven", "[PHONE_1]"),
    ("the number is 2 1 2 5 5 5 0 1 8 7", "the number is [PHONE_1]"),
    ("Two-one-two, five-five-five, O one eight seven", "[PHONE_1]"),
    ("my number is five five five, oh one eight seven", "my number is [PHONE_1]"),
    ("double five five, oh one eight seven", "[PHONE_1]"),
    ("oh seven seven double oh, nine double oh one two three", "[PHONE_1]"),
    ("plus four four, seven seven zero zero, nine zero zero one two three", "[PHONE_1]"),
    ("Oh, 212 555 0187", "Oh, [PHONE_1]"),
    # card
    ("5105, 1051, 0510, 5100", "[CARD_1]"),
    ("4111 1111 1111 1111", "[CARD_1]"),
    ("4111-1111-1111-1111", "[CARD_1]"),
    ("it's 4111111111111111", "it's [CARD_1]"),
    ("3782 822463 10005", "[CARD_1]"),
    ("four one one one, one one one one, one one one one, one one one one", "[CARD_1]"),
    ("card 4111 1111 1111 1111, expiry 12/27", "card [CARD_1], expiry 12/27"),
    # e-mail
    ("john.smith@example.com", "[EMAIL_1]"),
    ("write to JOHN.SMITH@EXAMPLE.COM.", "write to [EMAIL_1]."),
    ("email me at john.smith@example.com please", "email me at [EMAIL_1] please"),
    ("john dot smith at example dot com", "[EMAIL_1]"),
    ("my email is john at example dot com", "my email is [EMAIL_1]"),
    ("sarah at gmail dot com", "[EMAIL_1]"),
    ("reach me at sarah at gmail dot com", "reach me at [EMAIL_1]"),
    ("j underscore smith42 at outlook dot co dot uk", "[EMAIL_1]"),
    ("john.smith at example.com", "[EMAIL_1]"),
    # US SSN
    ("536-90-4399", "[SSN_1]"),
    ("my social is 536 90 4399", "my social is [SSN_1]"),
    ("five three six, nine oh, four three nine nine", "[SSN_1]"),
    ("536904399", "[SSN_1]"),
    # UK National Insurance number
    ("AB 12 34 56 C", "[NINO_1]"),
    ("my NI number is AB123456C", "my NI number is [NINO_1]"),
    ("A B one two three four five six C", "[NINO_1]"),
    # Canadian SIN
    ("SIN 130 692 544", "SIN [SIN_1]"),
    ("my social insurance number is 130-692-544", "my social insurance number is [SIN_1]"),
    ("my SIN is one three zero, six nine two, five four four", "my SIN is [SIN_1]"),
]

NEGATIVE = [
    "a table for 4 people at 7:30 please",
    "at 730 tomorrow",
    "on December 3rd 2026",
    "December 3, 2026 at 8",
    "it's $12.50 per person",
    "the set menu is £45 or €39.90",
    "we spent $1,250.00 last time, 1,250,000 in total",
    "in 2026 or 2027",
    "we were there in 1999 and 2000",
    "room 1204 on floor 12",
    "2 adults and 3 children",
    "between 6 and 8 pm",
    "table 12 at 6:45 pm",
    "the 14th of February",
    "12/03/2026",
    "the 2025-2026 season",
    "it was 50% off",
    "order number 42, 7 of us",
    "one, two, three, four, five, six, seven",
    "oh okay, 4 of us",
    "one or two people, maybe three",
    "for 4, 12 14 2026",
    "we'd like 2 tables for 6 and 8 people on 12 14",
    "party of 12 on the 3rd at 8 30",
    "Table for two at seven thirty",
    "the code is one two three four five six seven eight",
    "I booked at expedia dot com",
    "a table for 4 at opentable dot com",
    "I'm staying at the Hilton dot com",
    "we'll be at home at 7",
    "email me when you can",
    "O'Neill, party of 6, at 9am",
    "the 5 15 train, platform 4",
    "version 2.0",
    "my card ends in 4242",
    "ok, 12 34 56 a",
    "130 692 544",  # a Luhn-valid 3-3-3, but nobody said "SIN"
    "we could do 730, 800, 830, 900 or 930",
    "in 2019, 2020, 2021, 2022, 2023",
    "one two three four five six seven eight nine ten",  # counting; 123-45-6789 was never issued
    "536-00-4399",  # no SSN has the group 00
]


def labels(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


@pytest.mark.parametrize(("text", "expected"), POSITIVE)
def test_personal_data_becomes_a_placeholder_and_restores(text: str, expected: str) -> None:
    red = Redactor().redact(text)
    assert red.text == expected
    assert sum(red.counts.values()) == len(labels(expected))
    assert set(red.counts) == {PiiKind(label.lower()) for label in labels(expected)}
    assert Redactor.restore(red.text, red.values) == text


@pytest.mark.parametrize("text", NEGATIVE)
def test_ordinary_speech_is_left_alone(text: str) -> None:
    r = Redactor()
    assert r.redact(text) == Redaction(text, {}, {})
    assert r.mask(text) == text


def test_the_documented_example() -> None:
    red = Redactor().redact("call me on 212 555 0187")
    assert red == Redaction(
        text="call me on [PHONE_1]", values={"[PHONE_1]": "212 555 0187"}, counts={PiiKind.PHONE: 1}
    )


def test_the_same_value_keeps_its_placeholder_across_turns_however_it_is_said() -> None:
    r = Redactor()
    first = r.redact("call me on 212 555 0187, or john dot smith at example dot com")
    assert first.text == "call me on [PHONE_1], or [EMAIL_1]"
    second = r.redact(
        "that's two one two five five five oh one eight seven, +1 (212) 555-0187, John.Smith@example.com",
        values=first.values,
    )
    assert second.text == "that's [PHONE_1], [PHONE_1], [EMAIL_1]"
    assert second.counts == {PiiKind.PHONE: 2, PiiKind.EMAIL: 1}
    assert second.values == first.values  # nothing new, first spellings kept


def test_new_values_are_numbered_on_and_the_mapping_passed_in_is_not_changed() -> None:
    r = Redactor()
    first = r.redact("212 555 0187")
    before = dict(first.values)
    second = r.redact("and 646 555 0100, also 212 555 0187", values=first.values)
    assert second.text == "and [PHONE_2], also [PHONE_1]"
    assert second.values == {"[PHONE_1]": "212 555 0187", "[PHONE_2]": "646 555 0100"}
    assert first.values == before


def test_one_value_twice_in_one_text_is_one_placeholder() -> None:
    red = Redactor().redact("4111 1111 1111 1111, yes 4111-1111-1111-1111")
    assert red.text == "[CARD_1], yes [CARD_1]"
    assert red.counts == {PiiKind.CARD: 2}


def test_restore_matches_placeholders_case_insensitively_and_leaves_unknown_ones() -> None:
    values = {"[PHONE_1]": "212 555 0187", "[EMAIL_1]": "j@example.com"}
    reply = "I'll call [phone_1] and write to [Email_1]; [PHONE_2] and [PHONE 1] are not mine"
    assert Redactor.restore(reply, values) == (
        "I'll call 212 555 0187 and write to j@example.com; [PHONE_2] and [PHONE 1] are not mine"
    )


def test_restore_puts_values_back_verbatim() -> None:
    values = {"[REF_1]": r"a\1 $& \g<0>"}
    assert Redactor.restore("ref [REF_1].", values) == r"ref a\1 $& \g<0>."


def test_mask_keeps_no_mapping() -> None:
    r = Redactor(extra={"booking_ref": r"\bBK-\d{6}\b"})
    text = "BK-123456 for 212 555 0187, card 4111 1111 1111 1111, mail j@example.com, 4 people at 7:30"
    assert r.mask(text) == "[BOOKING_REF] for [PHONE], card [CARD], mail [EMAIL], 4 people at 7:30"


def test_configured_patterns_get_their_own_placeholders_and_counts() -> None:
    r = Redactor(extra={"booking_ref": r"\bBK-\d{6}\b", "member": r"(?i)\bmember [a-z]{2}\d{3}\b"})
    red = r.redact("booking BK-123456 and member ab123, call 212 555 0187; again BK-123456")
    assert red.text == "booking [BOOKING_REF_1] and [MEMBER_1], call [PHONE_1]; again [BOOKING_REF_1]"
    assert red.counts == {"booking_ref": 2, "member": 1, PiiKind.PHONE: 1}
    later = r.redact("BK-654321 not BK-123456", values=red.values)
    assert later.text == "[BOOKING_REF_2] not [BOOKING_REF_1]"


def test_configured_patterns_win_over_built_in_kinds() -> None:
    r = Redactor(extra={"order": r"\bORD 212 555 0187\b"})
    assert r.redact("ORD 212 555 0187").text == "[ORDER_1]"


def test_only_the_configured_kinds_are_redacted() -> None:
    r = Redactor(kinds={PiiKind.PHONE, PiiKind.CARD}, extra={"booking_ref": r"\bBK-\d{6}\b"})
    text = "212 555 0187, j@example.com, 536-90-4399, BK-123456"
    assert r.redact(text).text == "[PHONE_1], j@example.com, 536-90-4399, [BOOKING_REF_1]"
    assert Redactor(kinds=["email", "SSN"]).mask(text) == "212 555 0187, [EMAIL], [SSN], BK-123456"
    assert Redactor(kinds=[]).mask(text) == text


def test_a_kind_turned_off_is_not_redacted_as_another_kind() -> None:
    text = "card 4111 1111 1111 1111, email j2125550187@example.com"
    assert Redactor(kinds={PiiKind.PHONE}).redact(text).text == text


@pytest.mark.parametrize(
    ("kinds", "extra", "message"),
    [
        (
            None,
            {"booking_ref": r"\bBK-(\d{6}\b"},
            r"PII pattern 'booking_ref' is not a valid regular expression",
        ),
        (None, {"anything": r"x*"}, r"PII pattern 'anything' matches the empty string"),
        (None, {"2fa": r"\d{6}"}, r"PII pattern name '2fa'"),
        (None, {"booking ref": r"BK"}, r"PII pattern name 'booking ref'"),
        (None, {"phone": r"\d+"}, r"PII pattern 'phone': the name is taken by the built-in kind PHONE"),
        (None, {"ref": r"R\d", "REF": r"Q\d"}, r"share the placeholder name REF"),
        (None, {"ref": 42}, r"PII pattern 'ref': expected a regular expression string"),
        ("phone", None, r"PII kinds: expected a collection of kinds, got the string 'phone'"),
        (
            ["phone", "passport"],
            None,
            r"unknown PII kind 'passport'; kinds: phone, email, card, ssn, nino, sin",
        ),
    ],
)
def test_bad_configuration_is_a_clear_error(kinds: object, extra: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Redactor(kinds=kinds, extra=extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("5105105105105100", True),
        ("378282246310005", True),
        ("79927398713", True),
        ("4111111111111112", False),
        ("79927398710", False),
        ("", False),
        ("4111 1111", False),
        ("١٢٣", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_card_needs_13_to_19_digits_and_the_luhn_check() -> None:
    r = Redactor()
    assert r.redact("4111 1111 1111 1112").counts == {}  # Luhn fails
    assert r.redact("4222 2222 2222 2").text == "[CARD_1]"  # 13 digits
    assert r.redact("6011 0009 9013 9424").text == "[CARD_1]"
    assert r.redact("2223 0031 2200 3222").text == "[CARD_1]"  # Mastercard 2-series
    assert r.redact("1234 5678 9012 3452").counts == {}  # Luhn-valid, but no card network starts 1
    assert r.redact("4111 1111 1117").counts == {}  # Luhn-valid, but 12 digits


# --- properties -------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None)
FILLER = "please call me back the table tomorrow and thanks my number is card".split()
WORD_OF = {d: w for w, d in DIGIT_WORDS.items() if w not in ("oh", "o", "nought")}
NO_DIGITS = st.text(st.characters(blacklist_categories=("Nd",), blacklist_characters="@"), max_size=200)


def spoken(digits: str, zero: str) -> str:
    return " ".join(zero if d == "0" else WORD_OF[d] for d in digits)


@st.composite
def phones(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from("23456789")) + draw(st.text("0123456789", min_size=2, max_size=2))
    exch = draw(st.sampled_from("23456789")) + draw(st.text("0123456789", min_size=2, max_size=2))
    line = draw(st.text("0123456789", min_size=4, max_size=4))
    zero = draw(st.sampled_from(["zero", "oh", "o"]))
    groups = [area, exch, line]
    forms = [
        "".join(groups),
        " ".join(groups),
        "-".join(groups),
        ".".join(groups),
        ", ".join(groups),
        f"({area}) {exch}-{line}",
        f"+1 {area} {exch} {line}",
        f"1-{area}-{exch}-{line}",
        spoken("".join(groups), zero),
        ", ".join(spoken(g, zero) for g in groups),
        ", ".join(g if i % 2 else spoken(g, zero) for i, g in enumerate(groups)),
    ]
    return draw(st.sampled_from(forms))


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("3456")) + draw(
        st.text("0123456789", min_size=length - 2, max_size=length - 2)
    )
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    number = body + check
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return draw(
        st.sampled_from(
            [
                number,
                " ".join(groups),
                "-".join(groups),
                ", ".join(groups),
                ", ".join(spoken(g, "zero") for g in groups),
            ]
        )
    )


def embedded(value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    words = st.lists(st.sampled_from(FILLER), max_size=6)
    sep = st.sampled_from([" ", ", ", ". ", " - "])
    return st.builds(
        lambda a, s1, v, s2, b: " ".join(a) + s1 + v + s2 + " ".join(b), words, sep, value, sep, words
    )


def leaks(text: str) -> list[str]:
    rest = PLACEHOLDER.sub("", text)
    words = re.findall(r"[a-z]+", rest.lower())
    return re.findall(r"[0-9]", rest) + [w for w in words if w in DIGIT_WORDS]


MONTHS = "January February March April May June July August September October November December".split()


@st.composite
def booking_phrases(draw: st.DrawFn) -> str:
    """Times, dates, party sizes, prices and years, as a booking call is full of them."""
    hour, minute = draw(st.integers(1, 12)), draw(st.sampled_from([0, 5, 15, 30, 45]))
    day, month, year = draw(st.integers(1, 31)), draw(st.sampled_from(MONTHS)), draw(st.integers(1990, 2035))
    n, cents = draw(st.integers(1, 20)), draw(st.integers(0, 99))
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    phrases = [
        f"at {hour}:{minute:02d}",
        f"at {hour}{minute:02d}",
        f"at {hour} pm",
        f"for {n} people",
        f"a table for {n}",
        f"on {month} {day}{suffix}",
        f"on {month} {day}, {year}",
        f"on {month} {day}{suffix} {year}",
        f"on {day}/{draw(st.integers(1, 12))}/{year}",
        f"in {year}",
        f"it's ${n}.{cents:02d}",
        f"it's £{n * 100:,}",
        f"it's {n * 25} dollars",
        f"about {n * 5}% off",
        f"table {draw(st.integers(1, 999))}",
    ]
    return draw(st.sampled_from(phrases))


@FUZZ
@given(st.lists(booking_phrases(), min_size=1, max_size=6), st.sampled_from([" ", ", ", ". ", " and "]))
def test_booking_talk_with_times_dates_sizes_and_prices_is_never_touched(
    phrases: list[str], sep: str
) -> None:
    text = sep.join(phrases)
    assert Redactor().redact(text) == Redaction(text, {}, {})


@FUZZ
@given(NO_DIGITS)
def test_text_without_digits_or_at_signs_comes_through_unchanged(text: str) -> None:
    r = Redactor()
    assert r.redact(text).text == text
    assert r.mask(text) == text


@FUZZ
@given(embedded(phones()))
def test_no_digit_of_a_phone_number_survives(text: str) -> None:
    red = Redactor().redact(text)
    assert leaks(red.text) == []
    assert red.counts == {PiiKind.PHONE: 1}
    assert Redactor.restore(red.text, red.values) == text


@FUZZ
@given(embedded(cards()))
def test_no_digit_of_a_card_number_survives(text: str) -> None:
    red = Redactor().redact(text)
    assert leaks(red.text) == []
    assert red.counts == {PiiKind.CARD: 1}
    assert Redactor.restore(red.text, red.values) == text
