"""Whatever a native client sends as text, `parse_client_message` returns a ClientMessage or
raises BadMessage naming the problem: never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicemesh.edge.native import BadMessage, parse_client_message
from voicemesh.v1 import edge_pb2

pytestmark = pytest.mark.unit
FUZZ = settings(max_examples=300, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
known_keys = st.sampled_from(["start", "stop", "dtmf", "agent", "sample_rate_hz", "metadata", "digits", "reason"])


def check(text: str) -> None:
    try:
        msg = parse_client_message(text)
    except BadMessage as exc:
        assert str(exc)
    else:
        assert isinstance(msg, edge_pb2.ClientMessage) and msg.WhichOneof("kind") is not None


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.dictionaries(known_keys, json_values | st.dictionaries(known_keys, json_values, max_size=4), max_size=3))
def test_json_shaped_like_the_protocol(doc: dict[str, object]) -> None:
    check(json.dumps(doc))


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "a"])
def test_dtmf_digits_are_checked(digits: str) -> None:
    with pytest.raises(BadMessage, match=r"dtmf\.digits"):
        parse_client_message(json.dumps({"dtmf": {"digits": digits}}))


def test_dtmf_parses() -> None:
    assert parse_client_message('{"dtmf": {"digits": "12#"}}').dtmf.digits == "12#"
