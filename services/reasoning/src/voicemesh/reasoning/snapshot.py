"""A conversation's state as plain data: what another reasoning instance needs to carry on
the same call (the history the caller heard, the flow's step and slots, a backend's own
memory), with one JSON form for storing it (e.g. in Redis, keyed by session).

    snap = backend.snapshot()              # after a committed turn
    blob = snap.to_json()                  # bytes to store
    other = factory(agent, session)        # any replica
    other.restore(ConversationSnapshot.from_json(blob))

Pure: no I/O. `from_json` raises SnapshotError naming what is wrong with a stored blob, so
a bad or foreign record is refused instead of half-restored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from .extract import SlotValue
from .history import Message

VERSION = 1


class SnapshotError(ValueError):
    """A stored snapshot that cannot be restored (not JSON, another version, bad fields)."""


@dataclass(frozen=True)
class FlowState:
    """Where the rule engine is: its state, the slot being asked, misses in a row, slots
    collected, and the action it ended with (if it did)."""

    state: str
    asking: str | None = None
    misses: int = 0
    values: Mapping[str, SlotValue] = field(default_factory=dict)
    ended: tuple[str, str] | None = None  # (kind, target)
    # Fields of tool answers the flow may still say (`Tool.answer`).
    answers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConversationSnapshot:
    history: tuple[Message, ...] = ()
    flow: FlowState | None = None
    # Response ids minted so far in the session, so a successor never reuses one.
    responses: int = 0
    # A backend's own memory (e.g. the PII placeholder mapping), JSON-able values only.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "version": VERSION,
            "responses": self.responses,
            "history": [
                {"role": m.role, "text": m.text, "ref": m.ref, "interrupted": m.interrupted} for m in self.history
            ],
            "flow": None if self.flow is None else _flow_to_json(self.flow),
            "extra": dict(self.extra),
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, blob: bytes | str) -> ConversationSnapshot:
        try:
            body = json.loads(blob)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SnapshotError(f"a conversation snapshot is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise SnapshotError("a conversation snapshot is a JSON object")
        if body.get("version") != VERSION:
            raise SnapshotError(f"conversation snapshot version {body.get('version')!r} is not {VERSION}")
        try:
            history = tuple(
                Message(m["role"], str(m["text"]), str(m.get("ref", "")), bool(m.get("interrupted", False)))
                for m in body.get("history", [])
            )
            for m in history:
                if m.role not in ("system", "user", "assistant"):
                    raise SnapshotError(f"history role {m.role!r} is not system, user or assistant")
            flow = None if body.get("flow") is None else _flow_from_json(body["flow"])
            extra = body.get("extra", {})
            if not isinstance(extra, dict):
                raise SnapshotError("snapshot `extra` is an object")
            return cls(history, flow, int(body.get("responses", 0)), extra)
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"a conversation snapshot has a bad field: {exc!r}") from None


def _flow_to_json(flow: FlowState) -> dict[str, Any]:
    return {
        "state": flow.state,
        "asking": flow.asking,
        "misses": flow.misses,
        "values": {name: _value_to_json(v) for name, v in flow.values.items()},
        "ended": list(flow.ended) if flow.ended is not None else None,
        "answers": dict(flow.answers),
    }


def _flow_from_json(body: Any) -> FlowState:
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise SnapshotError("snapshot `flow` needs a `state` name")
    ended = body.get("ended")
    return FlowState(
        state=body["state"],
        asking=body.get("asking"),
        misses=int(body.get("misses", 0)),
        values={str(k): _value_from_json(v) for k, v in dict(body.get("values", {})).items()},
        ended=(str(ended[0]), str(ended[1])) if ended else None,
        answers={str(k): str(v) for k, v in dict(body.get("answers", {})).items()},
    )


def _value_to_json(value: SlotValue) -> dict[str, Any]:
    # bool before int: a bool is an int in Python.
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, time):
        return {"time": value.isoformat()}
    if isinstance(value, int | float):
        return {"number": value}
    return {"text": str(value)}


def _value_from_json(body: Any) -> SlotValue:
    if not isinstance(body, dict) or len(body) != 1:
        raise SnapshotError(f"a slot value is one of bool, date, time, number, text: got {body!r}")
    ((kind, value),) = body.items()
    if kind == "bool":
        return bool(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "time":
        return time.fromisoformat(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SnapshotError(f"a number slot value is a number: got {value!r}")
        return value
    if kind == "text":
        return str(value)
    raise SnapshotError(f"unknown slot value kind {kind!r}")
