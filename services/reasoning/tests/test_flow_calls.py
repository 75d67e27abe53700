"""A flow step that calls an HTTP tool (`State.call`): the engine's decisions (pure), the
agent file's checks, and a rule-engine agent booking through a real HTTP service."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest
from booking_tool import CONFIRMATION, BookingTool

from voicemesh.agent import AgentFileError, parse_agent
from voicemesh.reasoning.backend import SessionInfo, TextChunk, ToolCall
from voicemesh.reasoning.backends import Backends
from voicemesh.reasoning.catalog import AgentCatalog
from voicemesh.reasoning.rules import FlowCall, FlowEngine

WEDNESDAY = date(2025, 3, 12)
TOKEN = "flow-booking-token"


def booking_agent(port: int = 9) -> str:
    return textwrap.dedent(
        f"""\
        id: booker
        name: Booker
        greeting: "Hello."
        slots:
          party_size: {{type: number, prompt: "How many people?", min: 1, max: 12}}
          date: {{type: date, prompt: "What day?", min: 0, max: 60}}
          phone: {{type: text, prompt: "What number should we text?"}}
        tools:
          - name: book_table
            description: Book a table.
            url: http://127.0.0.1:{port}/book
            parameters:
              type: object
              properties:
                party_size: {{type: integer}}
                date: {{type: string}}
                phone: {{type: string}}
              required: [party_size, date]
            auth: {{env: BOOKING_TOKEN}}
            answer: [confirmation]
            filler: "Still checking."
            filler_after_ms: 200
        flow:
          start: booking
          states:
            booking:
              collect: [party_size, date]
              next: book
            book:
              say: "Let me book that."
              call: book_table
              next: booked
              on_failure: failed
            booked:
              say: "Booked, your confirmation is {{confirmation}}."
              action: hangup
            failed:
              say: "Sorry, I could not book that. Please call back later."
              action: hangup
        """
    )


@pytest.mark.unit
def test_the_flow_calls_the_tool_with_its_slots_then_says_the_answer() -> None:
    engine = FlowEngine(parse_agent(booking_agent(), "booker.yaml"), WEDNESDAY)
    engine.start()
    assert engine.respond("Four people.").text == "What day?"
    reply = engine.respond("Tomorrow.")
    assert reply.text == "Let me book that."
    assert reply.tool_call == FlowCall("book_table", {"party_size": 4, "date": "2025-03-13"})
    done = engine.tool_result(True, {"confirmation": "BK-1", "ignored": "x"})
    assert done.text == "Booked, your confirmation is BK-1." and done.action is not None
    assert engine.snapshot().answers == {"confirmation": "BK-1"}


@pytest.mark.unit
def test_a_failed_call_goes_on_failure_and_so_does_a_call_never_answered() -> None:
    agent = parse_agent(booking_agent(), "booker.yaml")
    engine = FlowEngine(agent, WEDNESDAY)
    engine.start()
    engine.respond("Four people, tomorrow.")
    assert engine.tool_result(False, {}).text.startswith("Sorry, I could not book that.")
    cut = FlowEngine(agent, WEDNESDAY)
    cut.start()
    cut.respond("Four people, tomorrow.")  # the caller cut in while the tool ran
    assert cut.respond("Hello?").text.startswith("Sorry, I could not book that.")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("call: book_table", "call: book_tabel"), "unknown tool 'book_tabel'"),
        (lambda t: t.replace("required: [party_size, date]", "required: [party_size, name]"), "requires 'name'"),
        (lambda t: t.replace("      on_failure: failed\n", ""), "needs `on_failure`"),
        (lambda t: t.replace("answer: [confirmation]", "answer: []"), "unknown slot {confirmation}"),
    ],
)
def test_bad_flow_calls_are_refused_with_their_line(edit: object, message: str) -> None:
    with pytest.raises(AgentFileError) as info:
        parse_agent(edit(booking_agent()), "booker.yaml")  # type: ignore[operator]
    assert message in str(info.value) and "booker.yaml:" in str(info.value)


@pytest.mark.integration
async def test_a_rule_engine_agent_books_through_the_http_tool(tmp_path: Path) -> None:
    async with BookingTool(TOKEN) as booking:
        booking.delay_s = 0.5  # slower than filler_after_ms
        (tmp_path / "booker.yaml").write_text(booking_agent(booking.port), encoding="utf-8")
        catalog = AgentCatalog(tmp_path, "booker")
        backends = Backends.build(catalog, {"BOOKING_TOKEN": TOKEN})
        backend = backends(catalog.get("booker"), SessionInfo("s1", WEDNESDAY))
        [_ async for _ in backend.greet("r0")]
        [_ async for _ in backend.respond("r1", "t1", "Two people.")]
        items = [i async for i in backend.respond("r2", "t2", "Tomorrow.")]
        await backends.aclose()
    said = "".join(i.text for i in items if isinstance(i, TextChunk))
    assert said == f"Let me book that. Still checking. Booked, your confirmation is {CONFIRMATION}."
    assert booking.requests == [({"party_size": 2, "date": "2025-03-13"}, f"Bearer {TOKEN}")]
    [event] = [i for i in items if isinstance(i, ToolCall)]
    assert event.tool == "book_table" and json.loads(event.result_json)["confirmation"] == CONFIRMATION


@pytest.mark.integration
async def test_a_tool_that_refuses_sends_the_flow_to_on_failure(tmp_path: Path) -> None:
    async with BookingTool("another-token") as booking:
        (tmp_path / "booker.yaml").write_text(booking_agent(booking.port), encoding="utf-8")
        catalog = AgentCatalog(tmp_path, "booker")
        backends = Backends.build(catalog, {"BOOKING_TOKEN": TOKEN})  # the service answers 401
        backend = backends(catalog.get("booker"), SessionInfo("s1", WEDNESDAY))
        [_ async for _ in backend.greet("r0")]
        items = [i async for i in backend.respond("r1", "t1", "Two people tomorrow.")]
        await backends.aclose()
    said = "".join(i.text for i in items if isinstance(i, TextChunk))
    assert said == "Let me book that. Sorry, I could not book that. Please call back later."


@pytest.mark.unit
def test_a_rules_agents_tool_setup_is_checked_at_start(tmp_path: Path) -> None:
    (tmp_path / "booker.yaml").write_text(booking_agent(), encoding="utf-8")
    with pytest.raises(ValueError, match="BOOKING_TOKEN"):
        Backends.build(AgentCatalog(tmp_path, "booker"), {})
