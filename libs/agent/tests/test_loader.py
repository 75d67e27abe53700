"""The agent file loader: valid files load with their defaults; every problem is reported
as `file:line: field: message`, where the line is the one a user has to fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from voicemesh.agent import AgentFileError, load_agent, parse_agent

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
SRC = "agents/x.yaml"

BASE = """\
id: x
name: Test agent
greeting: "Hello."
slots:
  party_size:
    type: number
    prompt: "How many people?"
  when:
    type: time
    prompt: "What time?"
intents:
  goodbye:
    keywords: [bye]
flow:
  start: ask
  on:
    goodbye: bye
  states:
    ask:
      collect: [party_size, when]
      next: confirm
    confirm:
      say: "A table for {party_size} at {when}. Right?"
      on:
        yes: bye
        no: ask
    bye:
      say: "Goodbye!"
      action: hangup
"""


def errors_of(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(AgentFileError) as info:
        parse_agent(text, SRC, base_dir)
    assert str(info.value).splitlines() == [p.format(SRC) for p in info.value.problems]
    return str(info.value).splitlines()


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[nth - 1]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_the_demo_agents_load() -> None:
    agent = load_agent(REPO / "agents" / "restaurant.yaml")
    assert agent.id == "restaurant"
    assert agent.name == "Bella Vista"
    assert agent.flow is not None and agent.flow.start in agent.flow.states
    assert set(agent.slots) == {"party_size", "date", "time", "name"}
    for path in (REPO / "agents").glob("*.yaml"):
        assert load_agent(path).id == path.stem


def test_defaults_of_a_minimal_agent() -> None:
    agent = parse_agent(BASE, SRC)
    assert agent.language == "en"
    assert agent.voice == "en_US-joe-medium"
    assert agent.turn.endpoint_silence_ms == 500
    assert agent.turn.allow_barge_in is True
    assert agent.turn.idle_timeout_ms == 15_000
    assert agent.backend.kind == "rules"
    assert agent.fallback.not_understood and agent.fallback.no_input
    assert agent.knowledge == [] and agent.tools == []


def test_the_end_of_turn_model_is_off_by_default_and_configurable() -> None:
    turn = parse_agent(BASE, SRC).turn
    assert (turn.smart_turn.enabled, turn.smart_turn.min_probability, turn.smart_turn.check_after_ms) == (
        False,
        0.8,
        200,
    )
    text = edit("id: x\n", "id: x\nturn:\n  smart_turn:\n    enabled: true\n    min_probability: 0.9\n")
    turn = parse_agent(text, SRC).turn
    assert (turn.smart_turn.enabled, turn.smart_turn.min_probability) == (True, 0.9)
    text = edit("id: x\n", "id: x\nturn:\n  smart_turn:\n    min_probability: 0.3\n")
    (message,) = errors_of(text)
    assert message.startswith(f"{SRC}:4: turn.smart_turn.min_probability: Input should be greater than or equal to 0.5")


def test_the_late_reply_filler_is_off_unless_configured_and_checked() -> None:
    assert parse_agent(BASE, SRC).turn.filler is None
    text = edit(
        "id: x\n",
        'id: x\nturn:\n  filler:\n    after_ms: 800\n    phrases: ["Let me check.", "One moment."]\n',
    )
    filler = parse_agent(text, SRC).turn.filler
    assert filler is not None and (filler.after_ms, filler.phrases) == (800, ["Let me check.", "One moment."])
    text = edit("id: x\n", 'id: x\nturn:\n  filler:\n    phrases: ["Let me check."]\n')
    filler = parse_agent(text, SRC).turn.filler
    assert filler is not None and filler.after_ms == 1000
    for body, expected in (
        ("    phrases: []\n", "turn.filler.phrases: List should have at least 1 item"),
        (
            '    phrases: ["One moment.", "one moment."]\n',
            "turn.filler.phrases: filler 'one moment.' is listed twice",
        ),
        (
            f'    phrases: ["{"very " * 20}long"]\n',
            "turn.filler.phrases: filler 'very very very very very very '... is 104 characters",
        ),
        (
            '    after_ms: 50\n    phrases: ["Hm."]\n',
            "turn.filler.after_ms: Input should be greater than or equal to 200",
        ),
        ("    after_ms: 800\n", "turn.filler.phrases: required, but missing"),
    ):
        (message,) = errors_of(edit("id: x\n", "id: x\nturn:\n  filler:\n" + body))
        assert message.split(":", 2)[2].strip().startswith(expected), message


def test_docs_describe_every_filler_field() -> None:
    from voicemesh.agent.schema import FillerSettings

    doc = (REPO / "docs" / "agents.md").read_text(encoding="utf-8")
    section = doc[doc.index("### `turn.filler`") :].split("\n## ", 1)[0]
    assert "| `filler` |" in doc
    for field in FillerSettings.model_fields:
        assert f"| `{field}` |" in section, f"turn.filler.{field} is not in docs/agents.md"


def test_yes_no_and_on_stay_words_and_times_stay_text() -> None:
    """YAML 1.1 would turn `yes:`/`no:`/`on:` into booleans and 19:30 into 1170."""
    text = edit('    prompt: "What time?"', '    prompt: "What time?"\n    min: 12:00\n    max: 22:30')
    agent = parse_agent(text, SRC)
    assert agent.flow is not None
    assert agent.flow.states["confirm"].on == {"yes": "bye", "no": "ask"}
    assert agent.flow.on == {"goodbye": "bye"}
    assert agent.slots["when"].min == "12:00" and agent.slots["when"].max == "22:30"


def test_missing_file() -> None:
    with pytest.raises(AgentFileError) as info:
        load_agent("agents/does-not-exist.yaml")
    assert str(info.value) == "agents/does-not-exist.yaml: no such agent file"
    assert isinstance(info.value, ValueError)


def test_yaml_syntax_error_names_the_line() -> None:
    text = edit("  goodbye:\n    keywords: [bye]", "  goodbye:\n    keywords: [bye\n")
    (message,) = errors_of(text)
    assert message.startswith(f"{SRC}:")
    assert "invalid YAML" in message


def test_empty_file_and_non_mapping() -> None:
    assert errors_of("") == [f"{SRC}: the file is empty; an agent needs id and name"]
    assert errors_of("- just\n- a list\n") == [
        f"{SRC}:1: an agent file is a YAML mapping of `key: value` lines"
    ]


def test_wrong_type_names_field_and_line() -> None:
    text = edit("id: x\n", "id: x\nturn:\n  endpoint_silence_ms: fast\n")
    (message,) = errors_of(text)
    assert message.startswith(f"{SRC}:3: turn.endpoint_silence_ms: Input should be a valid integer")


def test_out_of_range_value() -> None:
    text = edit("id: x\n", "id: x\nturn:\n  idle_timeout_ms: 10\n")
    (message,) = errors_of(text)
    assert message.startswith(f"{SRC}:3: turn.idle_timeout_ms: Input should be greater than or equal to 1000")


def test_unknown_key_suggests_the_close_one() -> None:
    text = edit('    prompt: "What time?"', '    prompt: "What time?"\n    promt: again')
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'promt')}: slots.when.promt: unknown key; did you mean 'prompt'?"
    ]


def test_unknown_top_level_key_lists_the_allowed_ones() -> None:
    (message,) = errors_of(BASE + "zzz: 1\n")
    assert message.startswith(
        f"{SRC}:{line_of(BASE + 'zzz: 1', 'zzz')}: zzz: unknown key; allowed: id, name,"
    )


def test_wrong_shapes_are_named_plainly() -> None:
    text = edit("    keywords: [bye]", "    keywords: bye")
    text = edit("id: x\n", "id: x\nturn: 5\n", text)
    assert errors_of(text) == [
        f"{SRC}:2: turn: should be a mapping of `key: value` lines",
        f"{SRC}:{line_of(text, 'keywords: bye')}: intents.goodbye.keywords: should be a list,"
        " like [a, b] or lines starting with '- '",
    ]


def test_missing_required_field_points_at_its_parent() -> None:
    text = edit('    prompt: "What time?"\n', "")
    assert errors_of(text) == [f"{SRC}:{line_of(text, '  when:')}: slots.when.prompt: required, but missing"]


def test_duplicate_key() -> None:
    text = edit('greeting: "Hello."\n', 'greeting: "Hello."\ngreeting: "Hi."\n')
    assert errors_of(text) == [f"{SRC}:4: greeting: duplicate key (first on line 3)"]


def test_bad_names_and_ids() -> None:
    text = edit("id: x", "id: Bella Vista")
    (message,) = errors_of(text)
    assert message.startswith(f"{SRC}:1: id: 'Bella Vista' is not a valid agent id")
    text = edit("  party_size:", "  Party Size:")
    messages = errors_of(text)
    assert messages[0].startswith(f"{SRC}:5: slots.Party Size: 'Party Size' is not a valid name")


def test_several_problems_reported_in_line_order() -> None:
    text = edit("      next: confirm", "      next: confrim")
    text = edit("        no: ask", "        no: asked", text)
    text = edit("      collect: [party_size, when]", "      collect: [party_size, wen]", text)
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'wen]')}: flow.states.ask.collect[1]: unknown slot 'wen';"
        " slots: party_size, when",
        f"{SRC}:{line_of(text, 'confrim')}: flow.states.ask.next: unknown state 'confrim';"
        " states: ask, confirm, bye",
        f"{SRC}:{line_of(text, 'no: asked')}: flow.states.confirm.on.no: unknown state 'asked';"
        " states: ask, confirm, bye",
    ]


@pytest.mark.parametrize(
    ("old", "new", "marker", "expected"),
    [
        (
            "  start: ask",
            "  start: begin",
            "start: begin",
            "flow.start: unknown state 'begin'; states: ask, confirm, bye",
        ),
        (
            "    goodbye: bye\n  states",
            "    goodbye: farewell\n  states",
            "goodbye: farewell",
            "flow.on.goodbye: unknown state 'farewell'; states: ask, confirm, bye",
        ),
        (
            "        yes: bye",
            "        maybe: bye",
            "maybe: bye",
            "flow.states.confirm.on.maybe: unknown intent 'maybe'; intents: yes, no, goodbye",
        ),
        (
            '      say: "A table for {party_size} at {when}. Right?"',
            '      say: "A table for {party} at {when}. Right?"',
            "{party}",
            "flow.states.confirm.say: template names unknown slot {party}; slots: party_size, when",
        ),
        (
            'greeting: "Hello."',
            'greeting: "Hello {name:>3}."',
            "greeting:",
            "greeting: malformed placeholder {name:>3}: write {slot_name}",
        ),
        (
            '    prompt: "How many people?"',
            '    prompt: "How many {people?"',
            "{people?",
            "slots.party_size.prompt: malformed template: expected '}' before end of string;"
            " write {{ and }} for literal braces",
        ),
        (
            "    keywords: [bye]",
            "    patterns: ['(bye']",
            "(bye",
            "intents.goodbye.patterns[0]: invalid regular expression: missing ), unterminated"
            " subpattern at position 0",
        ),
        (
            "    keywords: [bye]",
            "    keywords: []",
            "  goodbye:",
            "intents.goodbye: an intent needs at least one of keywords, examples, patterns",
        ),
        (
            "      action: hangup",
            "      action: hangup\n      next: ask",
            "action: hangup",
            "flow.states.bye.action: a state with an action ends the conversation; it cannot also have next",
        ),
        (
            "      action: hangup",
            "      action: transfer",
            "action: transfer",
            "flow.states.bye.action: action transfer needs `transfer_to` (a number or SIP URI)",
        ),
        (
            "      action: hangup",
            "      action: hangup\n      transfer_to: '+123'",
            "transfer_to",
            "flow.states.bye.transfer_to: `transfer_to` is only for action: transfer",
        ),
        (
            "      collect: [party_size, when]\n      next: confirm",
            "      collect: [party_size, when]",
            "collect: [party_size",
            "flow.states.ask.collect: a state with `collect` needs `next`: where to go once done",
        ),
        (
            '      say: "Goodbye!"\n      action: hangup',
            '      say: "Goodbye!"',
            "    bye:",
            "flow.states.bye: the state has no way on: give it `next`, `on` or `action`",
        ),
        (
            "      next: confirm",
            "      next: confirm\n      change: [party_size]",
            "change:",
            "flow.states.ask.change: a state either collects slots or changes them, not both",
        ),
        (
            "    type: number\n",
            "    type: choice\n",
            "type: choice",
            "slots.party_size.type: a choice slot needs `choices`: the values the caller can pick",
        ),
        (
            "    type: number\n",
            "    type: number\n    choices: [a, b]\n",
            "choices:",
            "slots.party_size.choices: `choices` is only for type choice (this slot is number)",
        ),
        (
            '    prompt: "What time?"',
            '    prompt: "What time?"\n    min: 7pm',
            "min: 7pm",
            'slots.when.min: a time slot\'s bound is a 24-hour time in quotes, like "12:00" or "22:30"',
        ),
        (
            '    prompt: "How many people?"',
            '    prompt: "How many people?"\n    min: 5\n    max: 2',
            "max: 2",
            "slots.party_size.max: `max` is below `min`",
        ),
        (
            "    type: number\n",
            "    type: name\n    min: 1\n",
            "min: 1",
            "slots.party_size.min: `min` is only for number, time and date slots",
        ),
        (
            "name: Test agent",
            "name: Test agent\ntimezone: Mars/Olympus",
            "timezone",
            "timezone: unknown time zone 'Mars/Olympus': use an IANA name like Europe/Rome",
        ),
        (
            "name: Test agent",
            "name: Test agent\nfallback:\n  after_max_misses: give_up",
            "after_max_misses",
            "fallback.after_max_misses: unknown state 'give_up'; states: ask, confirm, bye",
        ),
        (
            "name: Test agent",
            "name: Test agent\nbackend:\n  model: x",
            "backend:",
            "backend: backend needs `kind`: rules or openai",
        ),
    ],
)
def test_each_check_names_the_line(old: str, new: str, marker: str, expected: str) -> None:
    text = edit(old, new)
    assert errors_of(text) == [f"{SRC}:{line_of(text, marker)}: {expected}"]


def test_states_that_never_wait_must_not_loop() -> None:
    text = BASE + "    a:\n      say: A\n      next: b\n    b:\n      say: B\n      next: a\n"
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'next: b')}: flow.states.a.next: the states a -> b -> a loop forever"
        " without waiting for the caller"
    ]


def test_rules_backend_needs_a_flow() -> None:
    text = BASE[: BASE.index("flow:")]
    assert errors_of(text) == [
        f"{SRC}:1: flow: the rules backend needs a `flow` (or set backend.kind: openai)"
    ]


def test_openai_backend_needs_no_flow_and_checks_its_fields() -> None:
    head = BASE[: BASE.index("flow:")]
    agent = parse_agent(
        head + "backend:\n  kind: openai\n  base_url: http://localhost:11434/v1\n  model: qwen2.5\n",
        SRC,
    )
    assert agent.backend.kind == "openai" and agent.flow is None
    text = head + "backend:\n  kind: openai\n  base_url: localhost\n  model: qwen2.5\n  temp: 1\n"
    assert errors_of(text) == [
        f"{SRC}:{line_of(text, 'base_url')}: backend.base_url: 'localhost' is not an http:// or https:// URL",
        f"{SRC}:{line_of(text, 'temp:')}: backend.temp: unknown key; did you mean 'temperature'?",
    ]


def test_knowledge_and_tools_are_validated(tmp_path: Path) -> None:
    (tmp_path / "menu.md").write_text("# Menu\n")
    extra = textwrap.dedent(
        """\
        knowledge:
          - path: menu.md
          - path: wine.md
          - name: hours
            text: Open 12 to 23.
            path: hours.md
        tools:
          - name: check_availability
            description: Free tables at a time.
            url: https://bookings.example/api/availability
            parameters: {type: object, properties: {time: {type: string}}}
          - name: check_availability
            description: Again.
            url: ftp://bookings.example
        """
    )
    text = BASE + extra
    # Field errors first: cross-checks run on an agent whose fields are all valid.
    assert errors_of(text, tmp_path) == [
        f"{SRC}:{line_of(text, 'ftp://')}: tools[1].url: 'ftp://bookings.example' is not an"
        " http:// or https:// URL",
    ]
    text = text.replace("ftp://", "https://")
    assert errors_of(text, tmp_path) == [
        f"{SRC}:{line_of(text, 'wine.md')}: knowledge[1].path: no such file 'wine.md'"
        " (paths are relative to the agent file)",
        f"{SRC}:{line_of(text, '- name: hours')}: knowledge[2]: a knowledge source has exactly"
        " one of `path` (a file) or `text`",
        f"{SRC}:{line_of(text, 'name: check_availability', 2)}: tools[1].name: duplicate tool"
        " name 'check_availability' (also tools[0])",
    ]
