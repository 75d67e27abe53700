"""The pure side of HTTP tools: checking a tool's parameters schema at load, checking the
model's arguments against it, encoding them for the request, and turning the tool's answer
(status and body bytes) into what the model is shown. No sockets, no clock.

Everything the model is shown is a JSON text; a failure is an object with an `error` key:

    {"error": "arguments.party_size: 'abc' is not of type 'integer'"}
    {"error": "the tool answered HTTP 500", "status": 500, "detail": {"error": "database down"}}

Error texts may quote the model's arguments (the model wrote them and needs them to fix
its call), so they are for the model and never for log text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

MAX_ERROR_CHARS = 300
MAX_DETAIL_CHARS = 500
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class ToolFailure(StrEnum):
    UNKNOWN_TOOL = "unknown_tool"
    BAD_ARGUMENTS = "bad_arguments"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    TRANSPORT = "transport"
    HTTP_STATUS = "http_status"
    TOO_LARGE = "too_large"


class ArgumentsError(ValueError):
    """The model's arguments are not JSON, not an object, or do not match the schema."""


@dataclass(frozen=True)
class Answer:
    """What a tool call comes to: ok, the JSON text for the model, a short error."""

    ok: bool
    result_json: str
    error: str = ""
    failure: ToolFailure | None = None


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    """Strict JSON: NaN and Infinity are refused (they could not be written back as JSON)."""
    return json.loads(text, parse_constant=_reject_constant)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failed(failure: ToolFailure, error: str, **extra: Any) -> Answer:
    error = _short(error, MAX_ERROR_CHARS)
    return Answer(False, dumps({"error": error, **extra}), error, failure)


# --- the parameters schema, at load ---------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolves(schema: Mapping[str, Any], ref: str) -> bool:
    """A local `#/a/b` JSON pointer that names a part of `schema`."""
    node: Any = schema
    for raw in ref.removeprefix("#").split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def check_parameters(tool: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's parameters schema, checked against the JSON Schema meta-schema (draft
    2020-12 unless it names another in `$schema`) and completed with `type: object`.
    Raises ValueError naming the tool."""
    if not parameters:
        return copy.deepcopy(EMPTY_PARAMETERS)
    schema = {"type": "object", **parameters}
    if schema["type"] != "object":
        raise ValueError(f"tool {tool!r}: parameters must be a JSON schema of type object")
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as e:
        raise ValueError(
            f"tool {tool!r}: parameters is not a valid JSON schema: {e.message} (at {e.json_path})"
        ) from None
    for ref in _refs(schema):
        # Remote references would be fetched during a call; unresolvable ones fail there.
        if not (ref == "#" or ref.startswith("#/")) or not _resolves(schema, ref):
            raise ValueError(
                f"tool {tool!r}: parameters $ref {ref!r} must point inside the schema (like '#/$defs/x')"
            )
    return schema


def arguments_validator(schema: Mapping[str, Any]) -> Validator:
    """A validator for a schema `check_parameters` returned."""
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema)


# --- the model's arguments, per call ---------------------------------------------------


def _field(path: Iterable[str | int]) -> str:
    out = "arguments"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_arguments(arguments_json: str, validator: Validator) -> dict[str, Any]:
    """The model's arguments as a dict, or ArgumentsError naming the failing field. An
    empty string means no arguments (some models send it for a tool without parameters)."""
    text = arguments_json.strip() or "{}"
    try:
        arguments = _loads(text)
    except ValueError:
        raise ArgumentsError("arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ArgumentsError("arguments must be a JSON object")
    error = best_match(validator.iter_errors(arguments))
    if error is not None:
        raise ArgumentsError(_short(f"{_field(error.absolute_path)}: {error.message}", MAX_ERROR_CHARS))
    return arguments


def _query_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Numbers and booleans as JSON writes them (true, 2.5); lists and objects JSON-encoded.
    return dumps(value)


def query_params(arguments: Mapping[str, Any]) -> list[tuple[str, str]]:
    """GET arguments as query parameters. A null argument is left out (not given)."""
    return [(key, _query_value(value)) for key, value in arguments.items() if value is not None]


def encode_body(arguments: Mapping[str, Any]) -> bytes:
    """POST arguments as a UTF-8 JSON body."""
    return dumps(arguments).encode()


# --- the tool's answer -----------------------------------------------------------------

_NOT_JSON = object()


def _decode(body: bytes, charset: str | None) -> str:
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name in Content-Type
        text = body.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


def _json_or_not(text: str) -> Any:
    try:
        return _loads(text)
    except ValueError:
        return _NOT_JSON


def answer(status: int, body: bytes, charset: str | None = None) -> Answer:
    """The model's view of a complete HTTP answer. 2xx: the JSON body as is, a non-JSON
    body wrapped as {"text": ...}, an empty body as {}. Other statuses fail, with the body
    (short) as `detail` so the model can explain or retry."""
    text = _decode(body, charset)
    value = _json_or_not(text) if text.strip() else _NOT_JSON
    if not 200 <= status < 300:
        extra: dict[str, Any] = {"status": status}
        if text.strip():
            encoded = dumps(value) if value is not _NOT_JSON else ""
            if encoded and len(encoded) <= MAX_DETAIL_CHARS:
                extra["detail"] = value
            else:
                extra["detail"] = _short(text.strip(), MAX_DETAIL_CHARS)
        return failed(ToolFailure.HTTP_STATUS, f"the tool answered HTTP {status}", **extra)
    if not text.strip():
        return Answer(True, "{}")
    if value is _NOT_JSON:
        return Answer(True, dumps({"text": text}))
    return Answer(True, dumps(value))


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n >= 1024 and n % 1024 == 0 else f"{n} bytes"


def too_large(limit: int, status: int) -> Answer:
    return failed(ToolFailure.TOO_LARGE, f"the tool's answer is larger than {_size(limit)}", status=status)
