"""Restore PII placeholders in a reply that arrives in pieces.

The model sees `[PHONE_1]` where the caller said "212 555 0187", and may say it back; a
streamed reply can split the placeholder over deltas (`"… on [PHO"`, `"NE_1] tomorrow"`).
`PlaceholderRestorer` holds back only the tail that could still become a placeholder and
releases everything else at once, so restoring costs the stream no latency before a `[`.

    restorer = PlaceholderRestorer(values)
    for delta in deltas:
        out = restorer.feed(delta)       # text safe to speak now (may be "")
    out = restorer.flush()               # whatever was held back, at the end

Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from voicemesh.mesh.pii import Redactor

# `[KIND_N]` as the redactor writes it; longer brackets are never placeholders.
MAX_PLACEHOLDER_CHARS = 40
_PREFIX = re.compile(r"\[(?:[A-Za-z][A-Za-z0-9_]*)?\Z")


class PlaceholderRestorer:
    """Feeds model deltas, returns them with known placeholders restored."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values
        self._held = ""

    def feed(self, delta: str) -> str:
        text = self._held + delta
        cut = self._hold_from(text)
        self._held = text[cut:]
        return Redactor.restore(text[:cut], self._values) if cut else ""

    def flush(self) -> str:
        text, self._held = self._held, ""
        return Redactor.restore(text, self._values)

    @staticmethod
    def _hold_from(text: str) -> int:
        """Where the unfinished tail starts: the last `[` that is still a possible
        placeholder prefix, else the end of the text."""
        start = text.rfind("[")
        if start < 0 or len(text) - start > MAX_PLACEHOLDER_CHARS:
            return len(text)
        if _PREFIX.match(text, start):
            return start
        return len(text)
