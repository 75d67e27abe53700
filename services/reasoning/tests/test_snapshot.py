"""The conversation snapshot: another instance restored from it carries on the same call
exactly as the first would have (the seam the failover work stores in Redis)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from voicemesh.agent import Agent, load_agent
from voicemesh.reasoning import RulesBackend, SessionInfo, TextChunk
from voicemesh.reasoning.snapshot import ConversationSnapshot, SnapshotError

pytestmark = pytest.mark.unit

AGENTS = Path(__file__).resolve().parents[3] / "agents"
WEDNESDAY = date(2025, 3, 12)
SESSION = SessionInfo("s1", WEDNESDAY)

BOOKING = [
    "Four people, please.",
    "Tomorrow at 7.30 p.m.",
    "My name is Alice Smith.",
    "No, make it six people.",
    "Yeah, that's right.",
]
CLINIC = [
    "A check-up please.",
    "Next Monday.",
    "At ten in the morning.",
    "Maria Garcia.",
    "No, I haven't.",
    "Yes.",
]


async def say(backend: RulesBackend, rid: str, text: str | None) -> tuple[str, list[object]]:
    items = backend.greet(rid) if text is None else backend.respond(rid, f"t{rid}", text)
    parts, other = [], []
    async for item in items:
        (parts if isinstance(item, TextChunk) else other).append(item.text if isinstance(item, TextChunk) else item)
    return "".join(parts), other


async def conversation(agent: Agent, lines: list[str], cut_at: int | None) -> list[tuple[str, list[object]]]:
    """The replies to `lines`; with `cut_at`, the backend is snapshotted after that many
    turns, the snapshot goes through JSON, and a fresh backend carries on."""
    backend = RulesBackend(agent, SESSION)
    replies = [await say(backend, "0", None)]
    for i, line in enumerate(lines, 1):
        if cut_at is not None and i == cut_at + 1:
            blob = backend.snapshot().to_json()
            backend = RulesBackend(agent, SESSION)
            backend.restore(ConversationSnapshot.from_json(blob))
        replies.append(await say(backend, str(i), line))
    return replies


@pytest.mark.parametrize("agent_file, lines", [("restaurant.yaml", BOOKING), ("clinic.yaml", CLINIC)])
async def test_a_restored_conversation_goes_on_as_if_nothing_happened(agent_file: str, lines: list[str]) -> None:
    agent = load_agent(AGENTS / agent_file)
    whole = await conversation(agent, lines, None)
    assert whole[-1][1], "the scripted call reaches the flow's end action"
    for cut in range(len(lines)):
        assert await conversation(agent, lines, cut) == whole, f"restored after turn {cut}"


async def test_the_history_survives_with_what_the_caller_heard() -> None:
    agent = load_agent(AGENTS / "restaurant.yaml")
    backend = RulesBackend(agent, SESSION)
    await say(backend, "r1", None)
    backend.cancel("r1", "Hello, thanks for calling")
    await say(backend, "r2", "Two people.")
    other = RulesBackend(agent, SESSION)
    other.restore(ConversationSnapshot.from_json(backend.snapshot().to_json()))
    assert other.history.messages == backend.history.messages
    assert other.history.messages[0].interrupted


def test_slot_values_of_every_type_round_trip() -> None:
    agent = load_agent(AGENTS / "restaurant.yaml")
    backend = RulesBackend(agent, SESSION)
    backend.engine.start()
    backend.engine.respond("Four people, tomorrow at 7.30 p.m., under the name Alice Smith.")
    snap = ConversationSnapshot.from_json(backend.snapshot().to_json())
    assert snap.flow is not None and dict(snap.flow.values) == dict(backend.engine.values)
    assert {type(v).__name__ for v in snap.flow.values.values()} == {"int", "date", "time", "str"}


@pytest.mark.parametrize(
    "blob, says",
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"version": 9}', "version 9"),
        (b'{"version": 1, "history": [{"role": "robot", "text": "x"}]}', "robot"),
        (b'{"version": 1, "flow": {"state": "booking", "values": {"x": {"colour": 1}}}}', "colour"),
        (b'{"version": 1, "history": [{"text": "x"}]}', "bad field"),
    ],
)
def test_a_bad_snapshot_is_refused_with_what_is_wrong(blob: bytes, says: str) -> None:
    with pytest.raises(SnapshotError, match=says):
        ConversationSnapshot.from_json(blob)


def test_a_snapshot_of_another_agent_does_not_fit() -> None:
    clinic = RulesBackend(load_agent(AGENTS / "clinic.yaml"), SESSION)
    clinic.engine.start()
    restaurant = RulesBackend(load_agent(AGENTS / "restaurant.yaml"), SESSION)
    with pytest.raises(SnapshotError, match=r"no flow state|no slot"):
        restaurant.restore(clinic.snapshot())
