"""Reply templates: plain text with `{slot_name}` placeholders, filled with spoken values."""

from __future__ import annotations

import string
from collections.abc import Mapping

_FORMATTER = string.Formatter()


def template_fields(text: str) -> list[str]:
    """The placeholder names in `text`, in order. Raises ValueError for a malformed template
    (an unbalanced brace, a format spec, a non-name placeholder)."""
    fields: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise ValueError(f"malformed template: {exc}; write {{{{ and }}}} for literal braces") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"malformed placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}: write {{slot_name}}"
            )
        fields.append(name)
    return fields


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders; a placeholder without a value becomes an empty string."""
    out: list[str] = []
    for literal, name, _spec, _conversion in _FORMATTER.parse(text):
        out.append(literal)
        if name is not None:
            out.append(values.get(name, ""))
    return " ".join("".join(out).split())
