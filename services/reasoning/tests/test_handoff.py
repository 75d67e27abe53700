"""A flow that hands single turns to the LLM and takes them back: the engine's decisions
(pure), the agent file's checks, and the LLM backend saying both parts in order."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from scripted_llm import Call, ScriptedLlm, Step, Text

from voicemesh.agent import AgentFileError, parse_agent
from voicemesh.reasoning.backend import AgentAction, SessionInfo, TextChunk
from voicemesh.reasoning.backends import Backends
from voicemesh.reasoning.catalog import AgentCatalog
from voicemesh.reasoning.rules import FlowEngine

WEDNESDAY = date(2025, 3, 12)
MENU_RULE = "Answer the question about the menu from the knowledge, in one sentence."


def flow_agent(base_url: str = "http://127.0.0.1:9/v1", *, to_llm: bool = False, back: str = "") -> str:
    text = textwrap.dedent(
        f"""\
        id: host
        name: Host
        greeting: "Hello."
        slots:
          party_size: {{type: number, prompt: "How many people?", min: 1, max: 12}}
          name: {{type: name, prompt: "What name?"}}
        intents:
          menu: {{keywords: [menu, vegan, dishes]}}
          goodbye: {{keywords: [bye]}}
        fallback:
          to_llm: {str(to_llm).lower()}
        flow:
          start: booking
          on: {{menu: menu_question, goodbye: bye}}
          states:
            booking:
              collect: [party_size, name]
              next: done
            menu_question:
              llm: "{MENU_RULE}"
            done:
              say: "Booked for {{party_size}} under {{name}}."
              action: hangup
            bye:
              say: "Goodbye."
              action: hangup
        backend:
          kind: openai
          base_url: {base_url}
          model: scripted
          first_token_timeout_ms: 2000
        """
    )
    if back:
        text = text.replace(f'llm: "{MENU_RULE}"', f'llm: "{MENU_RULE}"\n      next: {back}')
    return text


@pytest.mark.unit
def test_the_flow_hands_a_turn_to_the_llm_and_asks_its_question_again() -> None:
    engine = FlowEngine(parse_agent(flow_agent(), "host.yaml"), WEDNESDAY)
    assert engine.start().text == "Hello. How many people?"
    reply = engine.respond("Do you have vegan dishes?")
    assert (reply.handoff, reply.text, reply.state) == (MENU_RULE, "How many people?", "booking")
    reply = engine.respond("Four.")
    assert (reply.handoff, reply.text) == (None, "What name?")
    assert engine.respond("What's on the menu?").text == "What name?"  # still asking the name
    assert engine.respond("Alice.").text == "Booked for four under Alice."


@pytest.mark.unit
def test_a_handoff_state_with_next_goes_there_after_the_llm() -> None:
    engine = FlowEngine(parse_agent(flow_agent(back="bye"), "host.yaml"), WEDNESDAY)
    engine.start()
    reply = engine.respond("Vegan menu?")
    assert (reply.handoff, reply.text, reply.action is not None) == (MENU_RULE, "Goodbye.", True)


@pytest.mark.unit
def test_without_to_llm_a_turn_not_understood_stays_with_the_flow() -> None:
    plain = FlowEngine(parse_agent(flow_agent(), "host.yaml"), WEDNESDAY)
    plain.start()
    assert plain.respond("Is it raining?").handoff is None
    helped = FlowEngine(parse_agent(flow_agent(to_llm=True), "host.yaml"), WEDNESDAY)
    helped.start()
    reply = helped.respond("Is it raining?")
    assert (reply.handoff, reply.text) == ("", "How many people?")
    assert helped.respond("").handoff is None  # silence is still the flow's no_input


@pytest.mark.unit
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("kind: openai", "kind: rules").split("  base_url")[0], "needs `backend: {kind: openai"),
        (lambda t: t.replace("start: booking", "start: menu_question"), "hands to the LLM before the caller spoke"),
        (
            lambda t: t.replace(f'llm: "{MENU_RULE}"', f'llm: "{MENU_RULE}"\n      say: "Hm."'),
            "only has `llm` and `next`, not `say`",
        ),
    ],
)
def test_bad_handoffs_are_refused_with_their_line(edit: Any, message: str) -> None:
    with pytest.raises(AgentFileError, match=r"host\.yaml:\d+: .*") as info:
        parse_agent(edit(flow_agent()), "host.yaml")
    assert message in str(info.value)


@pytest.mark.integration
async def test_the_llm_answers_then_the_flow_takes_the_call_back(tmp_path: Path) -> None:
    def model(body: dict[str, Any], endpoint: str) -> list[Step]:
        assert MENU_RULE in body["messages"][0]["content"]
        return [Text("Yes, the marinara"), Text(" pizza is vegan.")]

    async with ScriptedLlm(model) as llm:
        (tmp_path / "host.yaml").write_text(flow_agent(llm.base_url()), encoding="utf-8")
        catalog = AgentCatalog(tmp_path, "host")
        backends = Backends.build(catalog, {})
        backend = backends(catalog.get("host"), SessionInfo("s1", WEDNESDAY))
        greeting = "".join([i.text async for i in backend.greet("r0") if isinstance(i, TextChunk)])
        answer = [i async for i in backend.respond("r1", "t1", "Do you have vegan dishes?")]
        asked = [i async for i in backend.respond("r2", "t2", "Two people.")]
        booked = [i async for i in backend.respond("r3", "t3", "Bob.")]
        snapshot = backend.snapshot()
        await backends.aclose()
    assert greeting == "Hello. How many people?"
    assert "".join(i.text for i in answer if isinstance(i, TextChunk)) == (
        "Yes, the marinara pizza is vegan. How many people?"
    )
    assert "".join(i.text for i in asked if isinstance(i, TextChunk)) == "What name?"
    assert "".join(i.text for i in booked if isinstance(i, TextChunk)) == "Booked for two under Bob."
    assert booked[-1] == AgentAction("hangup", "flow ended in state done")
    assert len(llm.bodies) == 1  # the flow's own turns never reach the model
    assert snapshot.flow is not None and snapshot.flow.state == "done"




@pytest.mark.integration
async def test_end_flow_leaves_the_flow_to_the_llm_for_the_rest_of_the_call(tmp_path: Path) -> None:
    def model(body: dict[str, Any], endpoint: str) -> list[Step]:
        names = {t["function"]["name"] for t in body.get("tools", [])}
        if len(body["messages"]) <= 3:
            assert "end_flow" in names
            return [Text("Sure, let's just chat."), Call("end_flow", {})]
        assert "end_flow" not in names  # no flow left to end
        return [Text("Happy to talk about anything.")]

    async with ScriptedLlm(model) as llm:
        (tmp_path / "host.yaml").write_text(flow_agent(llm.base_url(), to_llm=True), encoding="utf-8")
        catalog = AgentCatalog(tmp_path, "host")
        backends = Backends.build(catalog, {})
        backend = backends(catalog.get("host"), SessionInfo("s1", WEDNESDAY))
        [_ async for _ in backend.greet("r0")]
        left = [i async for i in backend.respond("r1", "t1", "Can we just talk?")]
        free = [i async for i in backend.respond("r2", "t2", "Four.")]
        snapshot = backend.snapshot()
        await backends.aclose()
    assert "".join(i.text for i in left if isinstance(i, TextChunk)) == "Sure, let's just chat."
    assert "".join(i.text for i in free if isinstance(i, TextChunk)) == "Happy to talk about anything."
    assert snapshot.flow is None and len(llm.bodies) == 2
