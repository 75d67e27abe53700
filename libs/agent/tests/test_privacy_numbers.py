"""`privacy`, `numbers` and `fallback.unavailable`: their defaults, and every problem reported
as `file:line: field: message` on the line a user has to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicemesh.agent import AgentFileError, parse_agent
from voicemesh.agent.schema import Agent, Fallback, Privacy

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
SRC = "agents/x.yaml"

BASE = """\
id: x
name: Test agent
backend:
  kind: openai
  base_url: http://127.0.0.1:8000/v1
  model: m
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(AgentFileError) as info:
        parse_agent(text, SRC)
    return str(info.value).splitlines()


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[nth - 1]


# -- privacy ----------------------------------------------------------------------------------


def test_privacy_defaults_redact_every_built_in_kind() -> None:
    privacy = parse_agent(BASE, SRC).privacy
    assert privacy.redact is True
    assert privacy.kinds == ["phone", "email", "card", "ssn", "nino", "sin"]
    assert privacy.patterns == {}


def test_privacy_with_chosen_kinds_and_a_pattern() -> None:
    text = BASE + "privacy:\n  kinds: [phone, email]\n  patterns:\n    booking_ref: '\\bBK-\\d{6}\\b'\n"
    privacy = parse_agent(text, SRC).privacy
    assert privacy.kinds == ["phone", "email"]
    assert privacy.patterns == {"booking_ref": r"\bBK-\d{6}\b"}


def test_redaction_can_be_turned_off() -> None:
    assert parse_agent(BASE + "privacy: {redact: false}\n", SRC).privacy.redact is False


def test_an_unknown_kind_names_the_kinds() -> None:
    text = BASE + "privacy:\n  kinds:\n    - phone\n    - passport\n"
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'passport')}: privacy.kinds[1]: "
        "Input should be 'phone', 'email', 'card', 'ssn', 'nino' or 'sin'"
    ]


def test_a_pattern_that_is_not_a_regular_expression() -> None:
    text = BASE + "privacy:\n  patterns:\n    ticket: 'T-('\n    booking_ref: 'BK-\\d+'\n"
    (error,) = errors_of(text)
    assert error.startswith(
        f"{SRC}:{line_of(text, 'ticket')}: privacy.patterns.ticket: not a regular expression: missing )"
    )


@pytest.mark.parametrize("pattern", ["'\\d*'", "'x?'", "'a|'", "'(BK-\\d+)?'"])
def test_a_pattern_that_matches_empty_text(pattern: str) -> None:
    text = BASE + f"privacy:\n  patterns:\n    ref: {pattern}\n"
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'ref:')}: privacy.patterns.ref: the pattern matches empty text"
    ]


@pytest.mark.parametrize("kind", ["phone", "email", "card", "ssn", "nino", "sin"])
def test_a_pattern_named_like_a_built_in_kind(kind: str) -> None:
    text = BASE + f"privacy:\n  patterns:\n    {kind}: '\\d{{4}}'\n"
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, kind + ':')}: privacy.patterns.{kind}: "
        f"{kind!r} is a built-in kind; name the pattern otherwise"
    ]


def test_a_pattern_name_must_be_a_lowercase_name() -> None:
    text = BASE + "privacy:\n  patterns:\n    Booking-Ref: 'BK-\\d+'\n"
    (error,) = errors_of(text)
    assert error.startswith(f"{SRC}:{line_of(text, 'Booking-Ref')}: privacy.patterns.Booking-Ref: ")
    assert "is not a valid name" in error


def test_every_bad_pattern_is_reported_in_line_order() -> None:
    text = BASE + "privacy:\n  patterns:\n    a_ref: '('\n    phone: '\\d+'\n    b_ref: '.*'\n"
    errors = errors_of(text)
    assert [e.split(": ")[1] for e in errors] == [
        "privacy.patterns.a_ref",
        "privacy.patterns.phone",
        "privacy.patterns.b_ref",
    ]
    assert [int(e.split(":")[1]) for e in errors] == [
        line_of(text, "a_ref"),
        line_of(text, "phone:"),
        line_of(text, "b_ref"),
    ]


def test_an_unknown_privacy_key() -> None:
    text = BASE + "privacy:\n  redcat: true\n"
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'redcat')}: privacy.redcat: unknown key; did you mean 'redact'?"
    ]


# -- numbers ----------------------------------------------------------------------------------


def test_numbers_default_to_none() -> None:
    assert parse_agent(BASE, SRC).numbers == []


def test_numbers_in_e164_form_load() -> None:
    text = BASE + 'numbers:\n  - "+12125550187"\n  - "+442079460000"\n  - "+61291234567"\n'
    assert parse_agent(text, SRC).numbers == ["+12125550187", "+442079460000", "+61291234567"]


@pytest.mark.parametrize(
    "number",
    [
        "212 555 0187",  # no country code
        "+1 212 555 0187",  # spaces
        "+1-212-555-0187",  # dashes
        "12125550187",  # no +
        "+0123456789",  # country codes do not start with 0
        "+1234567",  # too short
        "+1234567890123456",  # too long
        "tel:+12125550187",  # a URI, not a number
    ],
)
def test_a_number_not_in_e164_form(number: str) -> None:
    text = BASE + f'numbers:\n  - "+12125550187"\n  - "{number}"\n'
    line = line_of(text, f'"{number}"')
    assert errors_of(text) == [
        f"{SRC}:{line}: numbers[1]: {number!r} is not a number in E.164 form: "
        "'+', the country code and the number, digits only (like +12125550187)"
    ]


def test_an_unquoted_number_is_told_to_be_quoted() -> None:
    text = BASE + "numbers:\n  - +12125550187\n"
    assert errors_of(text) == [
        f'{SRC}:{line_of(text, "+1212")}: numbers[0]: write the number in quotes, like "+12125550187" '
        "(unquoted, YAML reads it as an integer)"
    ]


def test_a_number_listed_twice_is_reported_where_it_repeats() -> None:
    text = (
        BASE + 'numbers:\n  - "+12125550187"\n  - "+442079460000"\n  - "+12125550187"\n  - "+442079460000"\n'
    )
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, '+12125550187', 2)}: numbers[2]: +12125550187 is listed twice (also numbers[0])",
        f"{SRC}:{line_of(text, '+442079460000', 2)}: numbers[3]: +442079460000 is listed twice (also numbers[1])",
    ]


def test_numbers_is_a_list() -> None:
    text = BASE + 'numbers: "+12125550187"\n'
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'numbers')}: numbers: should be a list, like [a, b] or lines starting with '- '"
    ]


# -- fallback.unavailable ---------------------------------------------------------------------


def test_fallback_unavailable_has_a_default() -> None:
    fallback = parse_agent(BASE, SRC).fallback
    assert fallback.unavailable == "Sorry, I'm having trouble answering right now. Could you say that again?"


def test_fallback_unavailable_can_be_set() -> None:
    text = BASE + 'fallback:\n  unavailable: "Sorry, please call back in a minute."\n'
    assert parse_agent(text, SRC).fallback.unavailable == "Sorry, please call back in a minute."


def test_fallback_unavailable_cannot_be_empty() -> None:
    text = BASE + 'fallback:\n  unavailable: "  "\n'
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'unavailable')}: fallback.unavailable: String should have at least 1 character"
    ]


# -- the documentation says the same -----------------------------------------------------------


def test_docs_describe_privacy_numbers_and_unavailable() -> None:
    doc = (REPO / "docs" / "agents.md").read_text(encoding="utf-8")
    for field in ("privacy", "numbers"):
        assert f"| `{field}` |" in doc and f"## `{field}`" in doc
        assert field in Agent.model_fields
    for field in Privacy.model_fields:
        assert f"| `{field}` |" in doc, f"privacy.{field} is not in docs/agents.md"
    assert f'| `unavailable` | "{Fallback().unavailable}" |' in doc
