"""The vocabulary the PII detectors share: what kinds of personal data there are, and a hit.

Kept apart from `pii` so the detectors (`pii_numbers`, `pii_text`) and the redactor that
combines them can all use it without importing each other.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class PiiKind(StrEnum):
    """A built-in kind of personal data. The placeholder label is the value upper-cased."""

    PHONE = "phone"
    EMAIL = "email"
    CARD = "card"  # payment card: 13-19 digits, Luhn-valid
    SSN = "ssn"  # US Social Security number
    NINO = "nino"  # UK National Insurance number
    SIN = "sin"  # Canadian Social Insurance number

    @property
    def label(self) -> str:
        return self.value.upper()


class Hit(NamedTuple):
    """One detected value: `text[start:end]` is personal data of `kind`.

    `key` is the value normalised ("212 555 0187" and "two one two five five five oh one
    eight seven" share the key "2125550187"), so the same value gets the same placeholder.
    """

    start: int
    end: int
    kind: PiiKind
    key: str
