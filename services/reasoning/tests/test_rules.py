"""The flow engine, driven by the demo agent with Whisper-style transcripts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from voicemesh.agent import Agent, load_agent, parse_agent
from voicemesh.reasoning.rules import Action, FlowEngine

pytestmark = pytest.mark.unit

AGENTS = Path(__file__).resolve().parents[3] / "agents"
WEDNESDAY = date(2025, 3, 12)
CONFIRM_4_ALICE = (
    "So that's a table for four, tomorrow at 7:30 PM, under the name Alice Smith. Shall I book it?"
)


@pytest.fixture(scope="module")
def restaurant() -> Agent:
    return load_agent(AGENTS / "restaurant.yaml")


def talk(engine: FlowEngine, *lines: str) -> list[str]:
    return [engine.respond(line).text for line in lines]


def test_a_whole_booking(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    greeting = engine.start()
    assert greeting.text == (
        "Hello, thanks for calling Bella Vista. I can book a table for you. How many people will be joining?"
    )
    assert greeting.action is None and greeting.state == "booking"
    assert talk(engine, " Four people, please.", " Tomorrow at 7.30 p.m.", " My name is Alice Smith.") == [
        "What day would you like to come?",
        "And what name should I put the booking under?",
        CONFIRM_4_ALICE,
    ]
    done = engine.respond(" Yeah, that's right.")
    assert done.text == "Your table is booked. Thank you for calling Bella Vista, goodbye!"
    assert done.action == Action("hangup")
    assert done.state == "booked" and engine.ended
    assert engine.values == {
        "party_size": 4,
        "date": date(2025, 3, 13),
        "time": __import__("datetime").time(19, 30),
        "name": "Alice Smith",
    }
    # After the end: nothing more to say, the hang-up stands.
    late = engine.respond("Hello?")
    assert late.text == "" and late.action == Action("hangup")


def test_several_slots_at_once_skip_their_questions(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    assert talk(engine, "Hi, a table for two tomorrow at seven, please.", "It's under Bob.") == [
        "And what name should I put the booking under?",
        "So that's a table for two, tomorrow at 7 PM, under the name Bob. Shall I book it?",
    ]


def test_corrections_at_the_confirmation(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    talk(engine, "4", "Tomorrow at 7:30 PM.", "Alice Smith.")
    assert talk(engine, "No, make it six people.", "Actually, it's under the name Carol.") == [
        CONFIRM_4_ALICE.replace("four", "six"),
        CONFIRM_4_ALICE.replace("four", "six").replace("Alice Smith", "Carol"),
    ]
    assert talk(engine, "And on Friday at 8 pm.") == [
        "So that's a table for six, Friday at 8 PM, under the name Carol. Shall I book it?"
    ]
    assert engine.respond("Correct.").action == Action("hangup")


def test_no_asks_what_to_change(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    talk(engine, "4", "Tomorrow at 7:30 PM.", "Alice Smith.")
    assert talk(engine, "Nope.", "The time.", "Eight thirty.") == [
        "No problem. What would you like to change? The number of people, the day, the time, or the name?",
        "And at what time?",
        CONFIRM_4_ALICE.replace("7:30", "8:30"),
    ]
    assert talk(engine, "No.", "Make it 3 people.") == [
        "No problem. What would you like to change? The number of people, the day, the time, or the name?",
        CONFIRM_4_ALICE.replace("7:30", "8:30").replace("four", "three"),
    ]


def test_not_understood_re_asks_the_current_question(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    assert talk(engine, "Hmm, what?", "Two.", "Purple.") == [
        "Sorry, I didn't catch that. How many people is the table for?",
        "What day would you like to come?",
        "Sorry, I didn't catch that. Which day would you like? For example, tomorrow, or Friday.",
    ]
    talk(engine, "Tomorrow", "At 8", "Bob")
    assert talk(engine, "Banana.") == [
        "Sorry, I didn't catch that. Shall I book the table? Please say yes or no."
    ]


def test_silence_gets_no_input_and_the_question(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    assert talk(engine, "", "  ") == ["Are you still there? How many people is the table for?"] * 2


def test_too_many_misses_give_up(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    replies = [engine.respond(text) for text in ("Hmm.", "Er.", "What?", "Blah.")]
    assert [r.action for r in replies[:3]] == [None, None, None]
    assert replies[3].state == "give_up" and replies[3].action == Action("hangup")


def test_a_good_answer_resets_the_misses(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    talk(engine, "Hmm.", "Er.", "What?", "Two.", "Hmm.", "Er.", "What?")
    assert not engine.ended


def test_out_of_range_values_explain_and_re_ask(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    assert talk(engine, "Twenty people.", "Friday at 11 pm.", "Nine.") == [
        "Sorry, we can book tables for one to twelve people. How many people will be joining?",
        # Friday was fine and is kept; only the time is asked again.
        "Sorry, we serve from noon to 10:30 PM. And at what time?",
        "How many people will be joining?",
    ]
    assert engine.values["date"] == date(2025, 3, 14)


@pytest.mark.parametrize("state_turns", [0, 2, 4])
@pytest.mark.parametrize("text", ["Goodbye.", "Oh, never mind. Bye!", "That's all, bye."])
def test_goodbye_anytime(restaurant: Agent, state_turns: int, text: str) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    talk(engine, *["2", "tomorrow", "8 pm", "Bob"][:state_turns])
    reply = engine.respond(text)
    assert reply.text == "Thank you for calling Bella Vista. Goodbye!"
    assert reply.action == Action("hangup")


def test_asking_for_a_person_transfers(restaurant: Agent) -> None:
    engine = FlowEngine(restaurant, WEDNESDAY)
    engine.start()
    reply = engine.respond("Can I speak to someone, please?")
    assert reply.action == Action("transfer", "sip:host@bellavista.example")
    assert reply.text.startswith("Of course.")


def test_the_engine_is_deterministic(restaurant: Agent) -> None:
    script = [
        "Hi.",
        "Three people.",
        "next friday",
        "half past seven",
        "Dana",
        "no",
        "the name",
        "Eve",
        "yes",
    ]
    runs = []
    for _ in range(2):
        engine = FlowEngine(restaurant, WEDNESDAY)
        runs.append([engine.start(), *(engine.respond(t) for t in script)])
    assert runs[0] == runs[1]
    assert runs[0][-2].text.endswith("under the name Eve. Shall I book it?")


MENU_AGENT = """\
id: menu
name: Menu
greeting: "Hi."
slots:
  size:
    type: number
    prompt: "For how many?"
    aliases: [people]
  seating:
    type: choice
    prompt: "Inside or on the terrace?"
    choices: [inside, terrace]
  notes:
    type: text
    prompt: "Any requests?"
  newsletter:
    type: yes_no
    prompt: "Would you like our newsletter?"
intents:
  book:
    keywords: [book, reservation]
  hours:
    patterns: ['\\bopen(ing)?\\b']
flow:
  start: menu
  states:
    menu:
      say: "You can book a table or ask about our hours."
      on:
        book: booking
        hours: hours
    hours:
      say: "We open at noon."
      next: menu
    booking:
      collect: [size, seating, notes, newsletter]
      next: done
    done:
      say: "Done: {size}, {seating}, {notes}, newsletter {newsletter}."
      action: hangup
"""


def test_intents_carry_the_values_said_with_them() -> None:
    agent = parse_agent(MENU_AGENT, "menu.yaml")
    engine = FlowEngine(agent, WEDNESDAY)
    assert engine.start().text == "Hi. You can book a table or ask about our hours."
    assert talk(engine, "When are you open?") == [
        "We open at noon. You can book a table or ask about our hours."
    ]
    assert talk(engine, "I'd like to book for 5 people.", "The terrace, please.") == [
        "Inside or on the terrace?",
        "Any requests?",
    ]
    assert talk(engine, "A high chair for the baby.") == ["Would you like our newsletter?"]
    final = engine.respond("No thanks.")
    assert final.text == "Done: five, terrace, A high chair for the baby, newsletter no."
    assert final.action == Action("hangup")


def test_a_flowless_agent_is_refused() -> None:
    head = MENU_AGENT[: MENU_AGENT.index("flow:")]
    agent = parse_agent(head + "backend: {kind: openai, base_url: 'http://x', model: m}\n", "m.yaml")
    with pytest.raises(ValueError, match="no flow"):
        FlowEngine(agent, WEDNESDAY)
