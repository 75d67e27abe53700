"""`LlmBackend` over real HTTP: a scripted OpenAI-compatible model (scripted_llm.py says
why it is scripted) and a real booking tool service, both on 127.0.0.1. The agent is
loaded from a YAML file through the catalog and `Backends.build`, as the service does."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from booking_tool import CONFIRMATION, BookingTool
from scripted_llm import Call, Hang, Pause, ScriptedLlm, Status, Step, Text, last_user, tool_results

from voicemesh.reasoning.backend import AgentAction, ConversationBackend, SessionInfo, TextChunk, ToolCall
from voicemesh.reasoning.backends import AgentSetupError, Backends
from voicemesh.reasoning.catalog import AgentCatalog

pytestmark = pytest.mark.integration

KNOWLEDGE = Path(__file__).resolve().parent / "knowledge"
SESSION = SessionInfo("s1", date(2026, 12, 2))
PHONE_SAID = "212, 555, 0187"
CARD_SAID = "4111 1111 1111 1111"
TOKEN = "booking-token-9f2"
WAIT_S = 5.0


def agent_yaml(llm: ScriptedLlm, tools_port: int, **backend: Any) -> str:
    """The test agent: knowledge, one HTTP tool with a filler, the scripted model; `backend`
    adds or overrides backend fields (JSON is YAML)."""
    fields = {
        "kind": "openai",
        "base_url": llm.base_url("main"),
        "model": "scripted",
        "first_token_timeout_ms": 1000,
        "response_timeout_ms": 5000,
        **backend,
    }
    lines = "".join(f"\n  {key}: {json.dumps(value)}" for key, value in fields.items())
    return (
        textwrap.dedent(
            f"""\
            id: bella
            name: Bella Vista
            prompt: You take table bookings for Bella Vista.
            greeting: Bella Vista, how can I help?
            fallback:
              unavailable: Sorry, I cannot answer right now.
            knowledge:
              - path: {KNOWLEDGE / "bella-vista-menu.md"}
              - path: {KNOWLEDGE / "bella-vista-policies.md"}
            tools:
              - name: book_table
                description: Book a table.
                url: http://127.0.0.1:{tools_port}/book
                parameters:
                  type: object
                  properties:
                    party_size: {{type: integer}}
                    phone: {{type: string}}
                  required: [party_size, phone]
                auth: {{env: BOOKING_TOKEN}}
                filler: One moment while I check.
                filler_after_ms: 100
            backend:"""
        )
        + lines
        + "\n"
    )


async def open_backend(
    tmp_path: Path, yaml_text: str, env: dict[str, str] | None = None
) -> tuple[Backends, ConversationBackend]:
    (tmp_path / "bella.yaml").write_text(yaml_text, encoding="utf-8")
    catalog = AgentCatalog(tmp_path, "bella")
    backends = Backends.build(catalog, {"BOOKING_TOKEN": TOKEN, **(env or {})})
    backend = backends(catalog.get("bella"), SESSION)
    await backend.open()
    return backends, backend


async def reply(backend: ConversationBackend, rid: str, turn: str, text: str) -> list[object]:
    return [item async for item in backend.respond(rid, turn, text)]


def spoken(items: Sequence[object]) -> str:
    return "".join(i.text for i in items if isinstance(i, TextChunk))


@pytest.fixture
async def booking() -> AsyncIterator[BookingTool]:
    async with BookingTool(TOKEN) as service:
        yield service


def full_agent(llm: ScriptedLlm, booking: BookingTool) -> str:
    return agent_yaml(llm, booking.port)


# -- streaming, knowledge, redaction ------------------------------------------------------


async def test_the_reply_streams_with_placeholders_restored_and_no_raw_number_sent(
    tmp_path: Path, booking: BookingTool
) -> None:
    def model(body: dict[str, Any], endpoint: str) -> list[Step]:
        assert "[PHONE_1]" in last_user(body)
        return [Text("Thanks, I will text [PHO"), Text("NE_1] a"), Text(" confirmation.")]

    async with ScriptedLlm(model) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        items = await reply(backend, "r1", "t1", f"My number is {PHONE_SAID}.")
        await backends.aclose()
    assert spoken(items) == f"Thanks, I will text {PHONE_SAID} a confirmation."
    assert next(i.text for i in items if isinstance(i, TextChunk)) == "Thanks, I will text "  # no wait before "["
    assert b"555" not in llm.raw[0] and b"0187" not in llm.raw[0]


async def test_the_turn_retrieves_knowledge_into_the_system_prompt(tmp_path: Path, booking: BookingTool) -> None:
    async with ScriptedLlm(lambda body, e: [Text("Yes.")]) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        await reply(backend, "r1", "t1", "Do you have a vegan dish?")
        await reply(backend, "r2", "t2", "Can I bring my dog?")
        await backends.aclose()
    first, second = (body["messages"][0]["content"] for body in llm.bodies)
    menu = (KNOWLEDGE / "bella-vista-menu.md").read_text()
    policies = (KNOWLEDGE / "bella-vista-policies.md").read_text()
    assert "vegan" in first.lower() and "vegan" in menu.lower()
    assert "dog" in second.lower() and "dog" in policies.lower()
    assert "Today is Wednesday, 2026-12-02." in first


async def test_history_is_what_the_caller_heard_and_cut_to_history_messages(
    tmp_path: Path, booking: BookingTool
) -> None:
    async with ScriptedLlm(lambda body, e: [Text("We are open from noon until eleven at night, every day.")]) as llm:
        yaml_text = agent_yaml(llm, booking.port, history_messages=4)
        backends, backend = await open_backend(tmp_path, yaml_text)
        await reply(backend, "r1", "t1", "When are you open?")
        assert backend.cancel("r1", "We are open from noon")  # the caller barged in
        for n in range(2, 5):
            await reply(backend, f"r{n}", f"t{n}", f"Question {n}?")
        await backends.aclose()
    second = llm.bodies[1]["messages"]
    assert second[1] == {"role": "user", "content": "When are you open?"}
    assert second[2]["content"].startswith("We are open from noon") and "eleven" not in second[2]["content"]
    assert "interrupted" in second[2]["content"]
    last = llm.bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
    assert last[-1]["content"] == "Question 4?"


# -- tools ----------------------------------------------------------------------------------


def booking_model(body: dict[str, Any], endpoint: str) -> list[Step]:
    results = tool_results(body)
    if not results:
        return [Text("Let me book that. "), Call("book_table", {"party_size": 2, "phone": "[PHONE_1]"})]
    result = json.loads(results[-1])
    return [Text(f"Booked, confirmation {result['confirmation']}, we will call {result['phone']}.")]


async def test_a_tool_call_uses_the_real_value_and_the_model_sees_only_placeholders(
    tmp_path: Path, booking: BookingTool
) -> None:
    async with ScriptedLlm(booking_model) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        items = await reply(backend, "r1", "t1", f"A table for two, my number is {PHONE_SAID}.")
        await backends.aclose()
    assert booking.requests == [({"party_size": 2, "phone": PHONE_SAID}, f"Bearer {TOKEN}")]
    assert spoken(items) == f"Let me book that. Booked, confirmation {CONFIRMATION}, we will call {PHONE_SAID}."
    for raw in llm.raw:
        assert b"555" not in raw
    assert json.loads(tool_results(llm.bodies[1])[0])["phone"] == "[PHONE_1]"
    events = [i for i in items if isinstance(i, ToolCall)]
    assert len(events) == 1 and events[0].tool == "book_table"
    assert "555" not in events[0].arguments_json + events[0].result_json
    assert "[PHONE]" in events[0].arguments_json


async def test_a_slow_tool_says_its_filler_first(tmp_path: Path, booking: BookingTool) -> None:
    booking.delay_s = 0.5
    async with ScriptedLlm(booking_model) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        items = await reply(backend, "r1", "t1", f"Two people, {PHONE_SAID}.")
        booking.delay_s = 0.0
        fast = await reply(backend, "r2", "t2", f"Again, two people, {PHONE_SAID}.")
        await backends.aclose()
    texts = [i.text for i in items if isinstance(i, TextChunk)]
    assert texts[:2] == ["Let me book that. ", "One moment while I check. "]
    assert "One moment" not in spoken(fast)


async def test_a_builtin_call_becomes_the_responses_action(tmp_path: Path, booking: BookingTool) -> None:
    def model(body: dict[str, Any], endpoint: str) -> list[Step]:
        return [Text("Goodbye!"), Call("hang_up", {"reason": "caller is done"})]

    async with ScriptedLlm(model) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        items = await reply(backend, "r1", "t1", "That's all, bye.")
        await backends.aclose()
    assert spoken(items) == "Goodbye!"
    assert items[-1] == AgentAction("hangup", "caller is done")
    assert len(llm.bodies) == 1  # nothing to ask the model after a built-in
    names = {tool["function"]["name"] for tool in llm.bodies[0]["tools"]}
    assert {"book_table", "hang_up", "transfer", "send_dtmf"} <= names


# -- failures -------------------------------------------------------------------------------


async def test_a_transient_error_is_retried_on_the_same_endpoint(tmp_path: Path, booking: BookingTool) -> None:
    answers: list[list[Step]] = [[Status(503)], [Text("Hello again.")]]
    async with ScriptedLlm(lambda body, e: answers.pop(0)) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        items = await reply(backend, "r1", "t1", "Hello?")
        await backends.aclose()
    assert spoken(items) == "Hello again."
    assert llm.endpoints == ["main", "main"]


async def test_a_failing_endpoint_falls_back_in_order(tmp_path: Path, booking: BookingTool) -> None:
    def model(body: dict[str, Any], endpoint: str) -> list[Step]:
        return {"main": [Status(401)], "second": [Hang()], "third": [Text("From the third.")]}[endpoint]

    async with ScriptedLlm(model) as llm:
        fallback = [
            {"base_url": llm.base_url("second"), "model": "m2"},
            {"base_url": llm.base_url("third"), "model": "m3"},
        ]
        backends, backend = await open_backend(tmp_path, agent_yaml(llm, booking.port, fallback=fallback))
        items = await reply(backend, "r1", "t1", "Hello?")
        await backends.aclose()
    assert spoken(items) == "From the third."
    # 401 is not retried; the hang is a first-token timeout, retried once (retries: 1).
    assert llm.endpoints == ["main", "second", "second", "third"]
    assert [b["model"] for b in llm.bodies] == ["scripted", "m2", "m2", "m3"]


async def test_when_every_endpoint_fails_the_agent_says_so(tmp_path: Path, booking: BookingTool) -> None:
    async with ScriptedLlm(lambda body, e: [Status(500)]) as llm:
        backends, backend = await open_backend(tmp_path, agent_yaml(llm, booking.port, retries=2))
        items = await reply(backend, "r1", "t1", "Hello?")
        await backends.aclose()
    assert spoken(items) == "Sorry, I cannot answer right now."
    assert len(llm.bodies) == 3


async def test_a_failure_after_words_were_spoken_ends_the_reply_there(tmp_path: Path, booking: BookingTool) -> None:
    async with ScriptedLlm(lambda body, e: [Text("We open at"), Hang()]) as llm:
        yaml_text = agent_yaml(llm, booking.port, response_timeout_ms=800)
        backends, backend = await open_backend(tmp_path, yaml_text)
        items = await reply(backend, "r1", "t1", "When do you open?")
        await backends.aclose()
    assert spoken(items) == "We open at"
    assert len(llm.bodies) == 1  # not asked again: the caller already heard the start


async def test_stopping_the_reply_closes_the_http_stream(tmp_path: Path, booking: BookingTool) -> None:
    async with ScriptedLlm(lambda body, e: [Text("Let me tell you a long story"), Pause(0.05), Hang()]) as llm:
        backends, backend = await open_backend(tmp_path, full_agent(llm, booking))
        stream = backend.respond("r1", "t1", "Tell me a story.")
        first = await anext(stream)
        assert isinstance(first, TextChunk)
        await stream.aclose()  # the servicer's barge-in
        await asyncio.wait_for(llm.gone.wait(), WAIT_S)
        assert backend.cancel("r1", "Let me tell")
        await backends.aclose()
    assert backend.history.messages[-1].text == "Let me tell"


async def test_a_missing_key_variable_is_found_at_start(tmp_path: Path, booking: BookingTool) -> None:
    async with ScriptedLlm(lambda body, e: [Text("x")]) as llm:
        with pytest.raises(AgentSetupError, match="LLM_KEY"):
            await open_backend(tmp_path, agent_yaml(llm, booking.port, api_key_env="LLM_KEY"))
