"""Whatever arrives on the socket, `parse_message` returns a message or raises TwilioProtocolError."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.edge.twilio_wire import (
    Connected,
    Dtmf,
    Mark,
    Media,
    SequenceTracker,
    Start,
    Stop,
    TwilioProtocolError,
    parse_message,
)

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=300, deadline=None)
MESSAGE_TYPES = (Connected, Start, Media, Dtmf, Mark, Stop)


@pytest.fixture(scope="module")
def valid(assets_dir: Path) -> list[dict[str, Any]]:
    """The valid reference messages (the docs shortened two payloads: made real here)."""
    docs = [json.loads(p.read_text()) for p in sorted((assets_dir / "twilio").glob("**/from_twilio_*.json"))]
    for doc in docs:
        if doc["event"] == "media":
            doc["media"]["payload"] = "f39/fw=="
    return docs


def check(text: str | bytes) -> None:
    """A message or a clear error, nothing else (a hang would trip the test timeout)."""
    try:
        msg = parse_message(text)
    except TwilioProtocolError as exc:
        assert str(exc), "an error must say what is wrong"
    else:
        assert isinstance(msg, MESSAGE_TYPES)


def test_the_fuzzed_fixtures_are_valid(valid: list[dict[str, Any]]) -> None:
    assert len(valid) == 11
    for doc in valid:
        assert isinstance(parse_message(json.dumps(doc)), MESSAGE_TYPES)


@FUZZ
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.binary())
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
event_names = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "x"])
likely_keys = st.sampled_from(
    ["event", "streamSid", "sequenceNumber", "start", "media", "dtmf", "mark", "stop", "protocol", "version"]
)


@FUZZ
@given(st.dictionaries(likely_keys | st.text(max_size=10), json_values, max_size=8), event_names)
def test_arbitrary_json_objects(obj: dict[str, Any], event: str) -> None:
    check(json.dumps(obj))
    check(json.dumps({**obj, "event": event}))


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    check(json.dumps(value))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into a JSON value."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, (*prefix, i))
    return out


def mutate(doc: Any, path: tuple[Any, ...], how: str, replacement: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    old = parent[last]
    if how == "drop":
        del parent[last]
    elif how == "replace":
        parent[last] = replacement
    elif how == "swap_type":  # number <-> string, string -> number, container -> scalar
        if isinstance(old, bool):
            parent[last] = str(old).lower()
        elif isinstance(old, int | float):
            parent[last] = str(old)
        elif isinstance(old, str):
            parent[last] = int(old) if old.isdigit() and len(old) < 20 else len(old)
        else:
            parent[last] = json.dumps(old)
    return doc


@FUZZ
@given(st.data(), st.sampled_from(["drop", "replace", "swap_type"]), json_values)
def test_mutated_fixtures(
    valid: list[dict[str, Any]], data: st.DataObject, how: str, replacement: Any
) -> None:
    doc = data.draw(st.sampled_from(valid))
    path = data.draw(st.sampled_from(paths(doc)))
    mutated = mutate(doc, path, how, replacement)
    check(json.dumps(mutated))
    check(json.dumps(mutated).encode())


@FUZZ
@given(st.data(), st.integers(min_value=0, max_value=200))
def test_truncated_fixtures(valid: list[dict[str, Any]], data: st.DataObject, cut: int) -> None:
    doc = data.draw(st.sampled_from(valid))
    text = json.dumps(doc)
    check(text[:cut])
    check(text.encode()[:cut])


@FUZZ
@given(st.integers(min_value=1, max_value=40), st.sampled_from(["[", "{", '{"a":', '{"event":']))
def test_deep_nesting(depth_hundreds: int, opener: str) -> None:
    check(opener * (depth_hundreds * 100))


@FUZZ
@given(st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=100))
def test_sequence_tracker_never_raises(numbers: list[int]) -> None:
    tracker = SequenceTracker()
    for n in numbers:
        before = tracker.last
        result = tracker.observe(n)
        if n > before:
            assert result == n - before - 1
            assert tracker.last == n
        else:
            assert result == -1
            assert tracker.last == before
