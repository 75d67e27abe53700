"""Cross-checks of a schema-valid agent: rules that relate one field to another.

Each problem is a field location (the same shape as pydantic's `loc`) and a message; the
loader turns locations into line numbers.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from datetime import time
from pathlib import Path

from .schema import Agent, Flow, PiiKindName, Slot, State
from .templates import template_fields

Loc = tuple[str | int, ...]
Found = tuple[Loc, str]

_RANGE_TYPES = ("number", "time", "date")
_PII_KINDS: tuple[str, ...] = typing.get_args(PiiKindName)


def check_agent(agent: Agent, base_dir: Path | None = None) -> list[Found]:
    """Every cross-field problem of `agent`. `base_dir` (the agent file's folder) enables the
    check that knowledge files exist."""
    found: list[Found] = []
    found += _check_slots(agent)
    found += _check_intents(agent)
    found += _check_flow(agent)
    found += _check_templates(agent)
    found += _check_knowledge(agent, base_dir)
    found += _check_tools(agent)
    found += _check_privacy(agent)
    found += _check_numbers(agent)
    return found


def parse_clock(value: object) -> time | None:
    """A time-of-day written "HH:MM" (24-hour), or None if `value` is not one."""
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
    return time(int(m.group(1)), int(m.group(2))) if m else None


def _one_of(names: list[str]) -> str:
    return ", ".join(names) if names else "(none declared)"


def _check_slots(agent: Agent) -> Iterator[Found]:
    for name, slot in agent.slots.items():
        loc: Loc = ("slots", name)
        if slot.type == "choice" and not slot.choices:
            yield (*loc, "type"), "a choice slot needs `choices`: the values the caller can pick"
        if slot.type != "choice" and slot.choices is not None:
            yield (*loc, "choices"), f"`choices` is only for type choice (this slot is {slot.type})"
        for bound in ("min", "max"):
            value = getattr(slot, bound)
            if value is None:
                continue
            if slot.type not in _RANGE_TYPES:
                yield (*loc, bound), f"`{bound}` is only for number, time and date slots"
            elif message := _bound_problem(slot, value):
                yield (*loc, bound), message
        if (
            slot.type in _RANGE_TYPES
            and slot.min is not None
            and slot.max is not None
            and not _bound_problem(slot, slot.min)
            and not _bound_problem(slot, slot.max)
            and _as_comparable(slot, slot.min) > _as_comparable(slot, slot.max)
        ):
            yield (*loc, "max"), "`max` is below `min`"


def _bound_problem(slot: Slot, value: object) -> str | None:
    if slot.type == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "a number slot's bound is a number"
    if slot.type == "time" and parse_clock(value) is None:
        return 'a time slot\'s bound is a 24-hour time in quotes, like "12:00" or "22:30"'
    if slot.type == "date" and (isinstance(value, bool) or not isinstance(value, int)):
        return "a date slot's bound is a whole number of days from today (0 = today)"
    return None


def _as_comparable(slot: Slot, value: object) -> float:
    if slot.type == "time":
        clock = parse_clock(value)
        assert clock is not None
        return clock.hour * 60 + clock.minute
    assert isinstance(value, int | float)
    return float(value)


def _check_intents(agent: Agent) -> Iterator[Found]:
    for name, intent in agent.intents.items():
        loc: Loc = ("intents", name)
        if not (intent.keywords or intent.examples or intent.patterns):
            yield loc, "an intent needs at least one of keywords, examples, patterns"
        for i, pattern in enumerate(intent.patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                yield (*loc, "patterns", i), f"invalid regular expression: {exc}"


def _check_flow(agent: Agent) -> Iterator[Found]:
    flow = agent.flow
    if flow is None:
        if agent.backend.kind == "rules":
            yield ("flow",), "the rules backend needs a `flow` (or set backend.kind: openai)"
        if agent.fallback.after_max_misses is not None:
            yield ("fallback", "after_max_misses"), "names a state, but the agent has no flow"
        return
    states = list(flow.states)
    slots = list(agent.slots)
    intents = agent.intent_names()

    def state_ref(loc: Loc, target: str) -> Iterator[Found]:
        if target not in flow.states:
            yield loc, f"unknown state {target!r}; states: {_one_of(states)}"

    def transitions(loc: Loc, on: dict[str, str]) -> Iterator[Found]:
        for intent, target in on.items():
            if intent not in intents:
                yield (*loc, intent), f"unknown intent {intent!r}; intents: {_one_of(intents)}"
            yield from state_ref((*loc, intent), target)

    yield from state_ref(("flow", "start"), flow.start)
    yield from transitions(("flow", "on"), flow.on)
    if agent.fallback.after_max_misses is not None:
        yield from state_ref(("fallback", "after_max_misses"), agent.fallback.after_max_misses)
    yield from _check_loops(flow)
    yield from _check_handoffs(agent, flow)
    for name, state in flow.states.items():
        loc: Loc = ("flow", "states", name)
        yield from _check_state_shape(loc, state)
        if state.next is not None:
            yield from state_ref((*loc, "next"), state.next)
        if state.on_failure is not None:
            yield from state_ref((*loc, "on_failure"), state.on_failure)
        if state.call is not None:
            yield from _check_call(agent, (*loc, "call"), state.call)
        yield from transitions((*loc, "on"), state.on)
        for field in ("collect", "change"):
            for i, slot in enumerate(getattr(state, field)):
                if slot not in agent.slots:
                    yield (*loc, field, i), f"unknown slot {slot!r}; slots: {_one_of(slots)}"


def _check_call(agent: Agent, loc: Loc, name: str) -> Iterator[Found]:
    tools = {tool.name: tool for tool in agent.tools}
    tool = tools.get(name)
    if tool is None:
        yield loc, f"unknown tool {name!r}; tools: {_one_of(list(tools))}"
        return
    required = tool.parameters.get("required", []) if isinstance(tool.parameters, dict) else []
    missing = [p for p in required if isinstance(p, str) and p not in agent.slots]
    if missing:
        yield loc, (
            f"tool {name!r} requires {missing[0]!r}, which is not a slot: a flow fills a tool's "
            "parameters from the slots of the same name"
        )


def _check_handoffs(agent: Agent, flow: Flow) -> Iterator[Found]:
    """States that hand a turn to the LLM need the LLM, a caller turn, and a way back."""
    llm_states = [name for name, state in flow.states.items() if state.llm is not None]
    if agent.backend.kind != "openai":
        for name in llm_states:
            yield (
                ("flow", "states", name, "llm"),
                "handing a turn to the LLM needs `backend: {kind: openai, ...}`",
            )
        if agent.fallback.to_llm:
            yield ("fallback", "to_llm"), "needs `backend: {kind: openai, ...}`"
    name: str | None = flow.start
    seen: set[str] = set()
    while name is not None and name in flow.states and name not in seen:  # the greeting's states
        seen.add(name)
        state = flow.states[name]
        if state.llm is not None:
            yield ("flow", "start"), f"the greeting reaches {name!r}, which hands to the LLM before the caller spoke"
            break
        if state.collect or state.on or state.change or state.action:
            break
        name = state.next
    if agent.fallback.after_max_misses in llm_states:
        yield ("fallback", "after_max_misses"), "names a state that hands to the LLM; name a flow state"
    for name in llm_states:
        target = flow.states[name].next
        if target is not None and target in llm_states:
            yield ("flow", "states", name, "next"), f"{target!r} hands to the LLM too; go back to a flow state"


def _check_loops(flow: Flow) -> Iterator[Found]:
    """States that only speak and move on (`say` + `next`) must not form a loop."""

    def passes_through(name: str) -> bool:
        state = flow.states.get(name)
        return (
            state is not None
            and not (state.action or state.on or state.collect or state.change)
            and state.next is not None
        )

    reported: set[str] = set()
    for first in flow.states:
        path, name = [], first
        while passes_through(name) and name not in path:
            path.append(name)
            name = flow.states[name].next  # type: ignore[assignment]
        if name == first and path and not reported & set(path):
            reported.update(path)
            loop = " -> ".join([*path, first])
            yield (
                ("flow", "states", first, "next"),
                (f"the states {loop} loop forever without waiting for the caller"),
            )


def _check_state_shape(loc: Loc, state: State) -> Iterator[Found]:
    if state.call is not None:
        extra = [f for f in ("collect", "change", "on", "action", "llm") if getattr(state, f)]
        if extra:
            yield (*loc, "call"), f"a state that calls a tool has `say`, `next` and `on_failure`, not `{extra[0]}`"
        for field in ("next", "on_failure"):
            if getattr(state, field) is None:
                yield (*loc, "call"), f"a state that calls a tool needs `{field}`: where to go after it"
        return
    if state.on_failure is not None:
        yield (*loc, "on_failure"), "`on_failure` is only for a state that calls a tool (`call`)"
    if state.llm is not None:
        extra = [f for f in ("say", "collect", "change", "on", "action", "reprompt") if getattr(state, f)]
        if extra:
            yield (
                (*loc, "llm"),
                f"a state that hands the turn to the LLM only has `llm` and `next`, not `{extra[0]}`",
            )
        return
    if state.action is not None:
        extra = [f for f in ("next", "on", "collect", "change") if getattr(state, f)]
        if extra:
            yield (
                (*loc, "action"),
                (f"a state with an action ends the conversation; it cannot also have {extra[0]}"),
            )
        if state.action == "transfer" and not state.transfer_to:
            yield (*loc, "action"), "action transfer needs `transfer_to` (a number or SIP URI)"
    if state.transfer_to is not None and state.action != "transfer":
        yield (*loc, "transfer_to"), "`transfer_to` is only for action: transfer"
    if state.collect and state.change:
        yield (*loc, "change"), "a state either collects slots or changes them, not both"
    if (state.collect or state.change) and state.next is None:
        field = "collect" if state.collect else "change"
        yield (*loc, field), f"a state with `{field}` needs `next`: where to go once done"
    if (
        state.action is None
        and state.next is None
        and state.llm is None
        and not (state.on or state.collect or state.change)
    ):
        yield loc, "the state has no way on: give it `next`, `on` or `action`"


def _check_templates(agent: Agent) -> Iterator[Found]:
    slots = list(agent.slots)
    answers = tuple(dict.fromkeys(field for tool in agent.tools for field in tool.answer))

    def check(loc: Loc, text: str | None, extra: tuple[str, ...] = ()) -> Iterator[Found]:
        if not text:
            return
        try:
            fields = template_fields(text)
        except ValueError as exc:
            yield loc, str(exc)
            return
        for field in fields:
            if field not in agent.slots and field not in extra:
                known = _one_of([*slots, *extra])
                yield loc, f"template names unknown slot {{{field}}}; slots: {known}"

    yield from check(("greeting",), agent.greeting)
    yield from check(("fallback", "not_understood"), agent.fallback.not_understood)
    yield from check(("fallback", "no_input"), agent.fallback.no_input)
    for name, slot in agent.slots.items():
        yield from check(("slots", name, "prompt"), slot.prompt)
        yield from check(("slots", name, "reprompt"), slot.reprompt)
        yield from check(("slots", name, "invalid"), slot.invalid, ("min", "max"))
    if agent.flow is not None:
        for name, state in agent.flow.states.items():
            yield from check(("flow", "states", name, "say"), state.say, answers)
            yield from check(("flow", "states", name, "reprompt"), state.reprompt, answers)


def _check_knowledge(agent: Agent, base_dir: Path | None) -> Iterator[Found]:
    for i, source in enumerate(agent.knowledge):
        loc: Loc = ("knowledge", i)
        if (source.path is None) == (source.text is None):
            yield loc, "a knowledge source has exactly one of `path` (a file) or `text`"
        elif source.path is not None and base_dir is not None:
            if not (base_dir / source.path).is_file():
                yield (*loc, "path"), f"no such file {source.path!r} (paths are relative to the agent file)"


def _check_tools(agent: Agent) -> Iterator[Found]:
    first: dict[str, int] = {}
    for i, tool in enumerate(agent.tools):
        if tool.name in first:
            yield ("tools", i, "name"), f"duplicate tool name {tool.name!r} (also tools[{first[tool.name]}])"
        first.setdefault(tool.name, i)
        if tool.parameters and tool.parameters.get("type", "object") != "object":
            yield ("tools", i, "parameters"), "parameters is a JSON schema of type object"


def _check_privacy(agent: Agent) -> Iterator[Found]:
    for name, pattern in agent.privacy.patterns.items():
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            yield ("privacy", "patterns", name), f"not a regular expression: {e}"
            continue
        if compiled.match(""):
            yield ("privacy", "patterns", name), "the pattern matches empty text"
        if name.upper() in {kind.upper() for kind in _PII_KINDS}:
            yield ("privacy", "patterns", name), f"{name!r} is a built-in kind; name the pattern otherwise"


def _check_numbers(agent: Agent) -> Iterator[Found]:
    seen: dict[str, int] = {}
    for i, number in enumerate(agent.numbers):
        if number in seen:
            yield ("numbers", i), f"{number} is listed twice (also numbers[{seen[number]}])"
        seen.setdefault(number, i)
