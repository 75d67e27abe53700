"""The built-in actions an LLM backend offers the model beside the agent's HTTP tools:
hang up, transfer, send DTMF, end the flow. Pure: the OpenAI function specs, and the parse
of a call the model made into a typed `BuiltinCall`.

    for call in model_tool_calls:
        builtin = parse_builtin(call.name, call.arguments_json)   # ValueError if malformed
        if builtin is None:
            result = await toolbox.call(call.name, call.arguments_json, session=http)

Error messages never repeat the arguments: a transfer target or DTMF digits (a PIN, a card
number) are personal data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .backend import AgentAction

MAX_DTMF_DIGITS = 32
MAX_TEXT_CHARS = 200
DTMF_PATTERN = re.compile(r"[0-9*#A-D]+")


class BuiltinKind(StrEnum):
    HANGUP = "hangup"
    TRANSFER = "transfer"
    DTMF = "dtmf"
    END_FLOW = "end_flow"


# The function name the model sees -> what it does.
BUILTIN_NAMES: dict[str, BuiltinKind] = {
    "hang_up": BuiltinKind.HANGUP,
    "transfer": BuiltinKind.TRANSFER,
    "send_dtmf": BuiltinKind.DTMF,
    "end_flow": BuiltinKind.END_FLOW,
}


@dataclass(frozen=True)
class BuiltinCall:
    """hangup (value: the reason, may be empty), transfer (value: the target),
    dtmf (value: the digits), end_flow (no value)."""

    kind: BuiltinKind
    value: str = ""

    def action(self) -> AgentAction | None:
        """What the edge does once the response has been played; None for end_flow,
        which only leaves the flow and is the backend's to act on."""
        match self.kind:
            case BuiltinKind.HANGUP:
                return AgentAction("hangup", self.value)
            case BuiltinKind.TRANSFER:
                return AgentAction("transfer", self.value)
            case BuiltinKind.DTMF:
                return AgentAction("dtmf", self.value)
            case BuiltinKind.END_FLOW:
                return None


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def builtin_tools() -> list[dict[str, Any]]:
    """The OpenAI `tools` entries for the built-in actions (a fresh list each call)."""
    return [
        _function(
            "hang_up",
            "End the call after your reply has been spoken. Use it when the caller is done "
            "or asks to hang up.",
            {
                "reason": {
                    "type": "string",
                    "maxLength": MAX_TEXT_CHARS,
                    "description": "Why the call ends, in a few words (e.g. 'booking complete').",
                }
            },
            [],
        ),
        _function(
            "transfer",
            "Transfer the caller to a person or another number after your reply has been spoken.",
            {
                "target": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TEXT_CHARS,
                    "description": "Where to transfer: a phone number or a SIP address.",
                }
            },
            ["target"],
        ),
        _function(
            "send_dtmf",
            "Press keys on the phone keypad (for example to navigate a phone menu).",
            {
                "digits": {
                    "type": "string",
                    "pattern": f"^[0-9*#A-D]{{1,{MAX_DTMF_DIGITS}}}$",
                    "description": f"The keys to press: 0-9, *, # and A-D, at most {MAX_DTMF_DIGITS}.",
                }
            },
            ["digits"],
        ),
        _function(
            "end_flow",
            "Leave the scripted conversation flow and continue the conversation freely.",
            {},
            [],
        ),
    ]


def _arguments(name: str, arguments_json: str) -> dict[str, Any]:
    if not arguments_json.strip():
        return {}
    try:
        value = json.loads(arguments_json)
    except ValueError:
        raise ValueError(f"{name}: the arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: the arguments must be a JSON object")
    return value


def _text(name: str, arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{name}: {key} must be a string")
    value = value.strip()
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{name}: {key} is longer than {MAX_TEXT_CHARS} characters")
    return value


def parse_builtin(name: str, arguments_json: str) -> BuiltinCall | None:
    """The built-in action the model called, or None if `name` is not a built-in (then it
    is an agent tool, or unknown). Malformed arguments raise ValueError with a message fit
    to log and to give back to the model; it never contains the argument values."""
    kind = BUILTIN_NAMES.get(name)
    if kind is None:
        return None
    arguments = _arguments(name, arguments_json)
    match kind:
        case BuiltinKind.HANGUP:
            return BuiltinCall(kind, _text(name, arguments, "reason"))
        case BuiltinKind.TRANSFER:
            target = _text(name, arguments, "target")
            if not target:
                raise ValueError("transfer: target is required (a phone number or SIP address)")
            return BuiltinCall(kind, target)
        case BuiltinKind.DTMF:
            digits = arguments.get("digits")
            if not isinstance(digits, str) or not digits.strip():
                raise ValueError("send_dtmf: digits is required (a string of keys like '123#')")
            digits = digits.strip()
            if len(digits) > MAX_DTMF_DIGITS:
                raise ValueError(f"send_dtmf: at most {MAX_DTMF_DIGITS} digits at a time")
            if not DTMF_PATTERN.fullmatch(digits):
                raise ValueError("send_dtmf: digits may contain only 0-9, *, # and A-D")
            return BuiltinCall(kind, digits)
        case BuiltinKind.END_FLOW:
            return BuiltinCall(kind)
