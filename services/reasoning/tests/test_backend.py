"""The backend contract as the rule engine fulfils it, the history, and the agent catalog."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from voicemesh.agent import AgentFileError, load_agent, parse_agent
from voicemesh.reasoning import (
    AgentAction,
    AgentCatalog,
    BackendUnavailable,
    CatalogError,
    History,
    RulesBackend,
    SessionInfo,
    TextChunk,
    UnknownAgentError,
    default_backend_factory,
    word_groups,
)

pytestmark = pytest.mark.unit

AGENTS = Path(__file__).resolve().parents[3] / "agents"
SESSION = SessionInfo("s1", date(2025, 3, 12))


@pytest.mark.parametrize(
    "text",
    [
        "Hello, thanks for calling Bella Vista. I can book a table for you. How many people?",
        "One.",
        "  padded   text with  odd spacing ",
        "",
    ],
)
def test_word_groups_are_small_and_lossless(text: str) -> None:
    groups = word_groups(text)
    assert "".join(groups) == text or (not text.strip() and groups == [])
    assert all(len(g.split()) <= 4 for g in groups)


def test_word_groups_end_at_clauses() -> None:
    assert word_groups("Hello, thanks for calling Bella Vista. Bye!") == [
        "Hello, ",
        "thanks for calling Bella ",
        "Vista. ",
        "Bye!",
    ]


async def test_rules_backend_streams_text_then_the_action() -> None:
    backend = RulesBackend(load_agent(AGENTS / "restaurant.yaml"), SESSION)
    greeting = [item async for item in backend.greet("r1")]
    assert all(isinstance(i, TextChunk) for i in greeting)
    text = "".join(i.text for i in greeting if isinstance(i, TextChunk))
    assert text.startswith("Hello, thanks for calling Bella Vista.")
    items = [item async for item in backend.respond("r2", "t1", "Goodbye.")]
    assert items[-1] == AgentAction("hangup", "flow ended in state goodbye")
    assert [(m.role, m.ref) for m in backend.history.messages] == [
        ("assistant", "r1"),
        ("user", "t1"),
        ("assistant", "r2"),
    ]


async def test_a_response_stopped_early_keeps_what_was_generated() -> None:
    backend = RulesBackend(load_agent(AGENTS / "restaurant.yaml"), SESSION)
    stream = backend.greet("r1")
    first = await anext(stream)
    await stream.aclose()  # what the servicer does when the caller barges in
    assert isinstance(first, TextChunk)
    assert backend.history.messages[-1].text == first.text.strip()
    assert backend.cancel("r1", "Hel")
    assert backend.history.messages[-1].text == "Hel"
    assert not backend.cancel("r9", "x")


def test_history_keeps_what_was_heard() -> None:
    history = History(max_messages=3)
    history.add_assistant("Hello there, how can I help?", "r1")
    history.add_user("Hi", "t1")
    assert history.heard("r1", "Hello there")
    assert history.assistant("r1") is not None and history.assistant("r1").interrupted  # type: ignore[union-attr]
    assert history.heard("r1", "  ")  # heard nothing: the message goes
    assert [m.role for m in history.messages] == ["user"]
    for n in range(5):
        history.add_user(f"u{n}")
    assert len(history) == 3 and history.messages[0].text == "u2"


def test_openai_agents_need_a_backend_this_build_lacks() -> None:
    agent = parse_agent(
        "id: llm\nname: LLM\nprompt: Be brief.\n"
        "backend: {kind: openai, base_url: 'http://localhost:11434/v1', model: qwen2.5}\n",
        "llm.yaml",
    )
    with pytest.raises(BackendUnavailable, match="openai"):
        default_backend_factory(agent, SESSION)


def test_catalog_loads_the_demo_agents() -> None:
    catalog = AgentCatalog(AGENTS, "restaurant")
    assert "restaurant" in catalog.ids
    assert catalog.get("").id == "restaurant"
    assert catalog.get("restaurant").name == "Bella Vista"
    with pytest.raises(UnknownAgentError) as info:
        catalog.get("pizzeria")
    assert str(info.value).startswith("unknown agent 'pizzeria'; known agents: ")
    assert "restaurant" in str(info.value)


def test_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        AgentCatalog(tmp_path / "nope", "restaurant")
    with pytest.raises(CatalogError, match=r"no \*\.yaml agent files"):
        AgentCatalog(tmp_path, "restaurant")
    shutil.copy(AGENTS / "restaurant.yaml", tmp_path / "restaurant.yaml")
    with pytest.raises(CatalogError, match=r"default agent 'clinic' is not defined .*restaurant"):
        AgentCatalog(tmp_path, "clinic")
    shutil.copy(AGENTS / "restaurant.yaml", tmp_path / "copy.yaml")
    with pytest.raises(AgentFileError) as info:
        AgentCatalog(tmp_path, "restaurant")
    assert str(info.value).startswith(f"{tmp_path / 'restaurant.yaml'}:")
    assert "agent id 'restaurant' is also used by" in str(info.value)
    (tmp_path / "copy.yaml").write_text("id: broken\nname: Broken\nturn:\n  allow_barge_in: maybe\n")
    with pytest.raises(AgentFileError) as info:
        AgentCatalog(tmp_path, "restaurant")
    assert str(info.value).startswith(f"{tmp_path / 'copy.yaml'}:4: turn.allow_barge_in:")
