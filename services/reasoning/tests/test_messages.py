"""The agent profile reasoning sends the edge carries the agent's turn settings."""

from __future__ import annotations

import pytest

from voicemesh.agent import parse_agent
from voicemesh.reasoning import messages

pytestmark = pytest.mark.unit

AGENT = """\
id: late
name: Late agent
backend: {kind: openai, base_url: "http://127.0.0.1:9/v1", model: m}
turn:
  filler:
    after_ms: 700
    phrases: ["Let me check that.", "One moment."]
"""


def test_the_filler_reaches_the_edge_in_the_profile() -> None:
    profile = messages.ready(parse_agent(AGENT, "late.yaml")).agent
    assert profile.HasField("filler")
    assert (profile.filler.after_ms, list(profile.filler.phrases)) == (
        700,
        ["Let me check that.", "One moment."],
    )
    off = messages.ready(parse_agent(AGENT.split("turn:")[0], "late.yaml")).agent
    assert not off.HasField("filler")
