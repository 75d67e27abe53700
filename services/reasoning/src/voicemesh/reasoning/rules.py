"""The embedded rule/flow engine: runs an agent's `flow` against caller transcripts.

Pure and deterministic: no asyncio, no clock (the call's date is a parameter). One
`FlowEngine` per conversation; `start()` gives the greeting, `respond(text)` the reply to
one caller turn. Each reply says which state the flow is in and, when the conversation is
over, the action the edge carries out after playing it (hang up, transfer).

How a turn is handled, in order:
1. nothing said (empty transcript) -> `fallback.no_input` and the current question again;
2. an intent of the current state's `on` (other than yes/no) -> that state;
3. slot values (the slot just asked for, the state's `collect`/`change` slots, and any
   slot already filled, so "no, make it six people" corrects the party size): a value
   outside the slot's min/max -> its `invalid` message and the question again; new values
   -> in a `collect` state ask the next missing slot or go `next`; in a `change` state go
   `next`; elsewhere say the state again with the new values (a re-confirmation);
4. in a `change` state, naming a slot ("the time") -> ask for it again;
5. yes/no of the current state's `on`; then the flow-wide `on` (e.g. goodbye);
6. otherwise `fallback.not_understood` and the current question again; after
   `fallback.max_misses` misses in a row, `fallback.after_max_misses` if set. With
   `fallback.to_llm` the LLM answers instead (the reply's `handoff`), and the question follows.

A state with `llm` hands the turn to the LLM: entering it sets the reply's `handoff` to its
instructions and the flow moves on at once, to `next` or back to the state it was in (whose
question is asked again), so the reply's text is what the flow says after the LLM's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from datetime import time as clock_time
from typing import Any, Literal

from voicemesh.agent import BUILTIN_INTENTS, Agent, Flow, State, render_template

from .extract import SlotValue, extract_slots, intent_matches, mentions, yes_or_no
from .snapshot import FlowState, SnapshotError
from .speech import say_bound, say_value
from .text import Token, tokenize, words

_MAX_HOPS = 32


@dataclass(frozen=True)
class Action:
    """What the edge does after playing a reply: hang up, or transfer to `target`."""

    kind: Literal["hangup", "transfer"]
    target: str = ""


@dataclass(frozen=True)
class FlowCall:
    """A tool the flow calls: its name and the arguments made from the slots (JSON values)."""

    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str
    action: Action | None
    state: str
    # The flow handed this turn to the LLM with these instructions ("" for none): the LLM
    # answers first, then `text` (the flow taking the conversation back) is said.
    handoff: str | None = None
    # The flow calls a tool: say `text`, run the call, and give its outcome to
    # `FlowEngine.tool_result`, whose reply carries on.
    tool_call: FlowCall | None = None


class FlowEngine:
    """One conversation with one caller, following `agent.flow`."""

    def __init__(self, agent: Agent, today: date) -> None:
        if agent.flow is None:
            raise ValueError(f"agent {agent.id!r} has no flow; the rule engine needs one")
        self._agent = agent
        self._flow: Flow = agent.flow
        self._today = today
        self._state = self._flow.start
        self._values: dict[str, SlotValue] = {}
        self._asking: str | None = None
        self._misses = 0
        self._ended: Action | None = None
        self._handoff: str | None = None
        self._call: FlowCall | None = None
        self._answers: dict[str, str] = {}  # tool answer fields the flow may say
        self._before: tuple[str, str | None] = (self._state, None)

    @property
    def state(self) -> str:
        return self._state

    @property
    def values(self) -> Mapping[str, SlotValue]:
        """The slot values collected so far."""
        return dict(self._values)

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def snapshot(self) -> FlowState:
        """Where the conversation is, as plain data (see snapshot.py)."""
        ended = (self._ended.kind, self._ended.target) if self._ended is not None else None
        return FlowState(self._state, self._asking, self._misses, dict(self._values), ended, dict(self._answers))

    def restore(self, flow: FlowState) -> None:
        """Carry on from `flow` (taken from an engine of the same agent). Raises
        SnapshotError for a state or slot this agent does not have."""
        if flow.state not in self._flow.states:
            raise SnapshotError(f"agent {self._agent.id!r} has no flow state {flow.state!r}")
        unknown = [n for n in (*flow.values, *([flow.asking] if flow.asking else [])) if n not in self._agent.slots]
        if unknown:
            raise SnapshotError(f"agent {self._agent.id!r} has no slot {unknown[0]!r}")
        if flow.ended is not None and flow.ended[0] not in ("hangup", "transfer"):
            raise SnapshotError(f"a flow ends in hangup or transfer, not {flow.ended[0]!r}")
        self._state, self._asking, self._misses = flow.state, flow.asking, flow.misses
        self._values = dict(flow.values)
        self._answers = dict(flow.answers)
        self._ended = Action(flow.ended[0], flow.ended[1]) if flow.ended is not None else None  # type: ignore[arg-type]

    def start(self) -> Reply:
        parts = [self._render(self._agent.greeting)] if self._agent.greeting else []
        return self._reply(parts, self._enter(self._flow.start, parts))

    def respond(self, text: str) -> Reply:
        if self._ended is not None:
            return Reply("", self._ended, self._state)
        if self._flow.states[self._state].call is not None:
            # The call's outcome never came (the caller cut in while it ran): assume the
            # worst, since it may or may not have been made, and let on_failure say so.
            return self.tool_result(False, {})
        self._handoff = None
        self._before = (self._state, self._asking)
        tokens = tokenize(text)
        if not tokens:
            return self._miss(self._agent.fallback.no_input)
        state = self._current
        matched = self._matched_intents(tokens)
        for intent, target in state.on.items():  # 2. the state's own intents
            if intent not in BUILTIN_INTENTS and intent in matched:
                return self._go(target, tokens)
        other_intents = any(i not in BUILTIN_INTENTS for i in matched)
        extraction = extract_slots(
            tokens,
            self._agent.slots,
            self._candidates(state),
            self._asking,
            self._today,
            free_form=not other_intents,
        )
        changed = {
            k: v
            for k, v in extraction.values.items()
            if self._values.get(k) != v and k not in extraction.invalid
        }
        self._values.update(changed)
        if extraction.invalid:  # 3. slot values
            return self._invalid(extraction.invalid[0])
        if changed:
            return self._after_update(state)
        if state.change:  # 4. naming a slot to change
            for name in state.change:
                if mentions(name, self._agent.slots[name], tokens):
                    self._values.pop(name, None)
                    return self._ask(name)
        for intent, target in state.on.items():  # 5. yes/no, then flow-wide intents
            if intent in BUILTIN_INTENTS and intent in matched:
                return self._go(target, tokens)
        for intent, target in self._flow.on.items():
            if intent in matched:
                return self._go(target, tokens)
        if extraction.values:  # the same values again: say the state again
            return self._after_update(state)
        return self._not_understood()

    # -- transitions ---------------------------------------------------------------------

    @property
    def _current(self) -> State:
        return self._flow.states[self._state]

    def _enter(self, name: str, parts: list[str]) -> Action | None:
        """Enter state `name` (and follow `next` through states that do not wait),
        appending what is said to `parts`. Returns the action if the conversation ends."""
        for _ in range(_MAX_HOPS):
            state = self._flow.states[name]
            if state.call is not None:  # say, then call the tool; tool_result goes on
                self._state, self._asking = name, None
                if state.say:
                    parts.append(self._render(state.say))
                self._call = FlowCall(state.call, self._arguments(state.call))
                return None
            if state.llm is not None:  # the LLM answers this turn; then the flow goes on
                self._handoff = state.llm
                if state.next is not None:
                    name = state.next
                    continue
                self._state, self._asking = self._before
                parts.append(self._question())
                return None
            self._state, self._asking = name, None
            if state.say:
                parts.append(self._render(state.say))
            if state.action is not None:
                self._ended = Action(state.action, state.transfer_to or "")
                return self._ended
            missing = [s for s in state.collect if s not in self._values]
            if missing:
                self._asking = missing[0]
                parts.append(self._render(self._agent.slots[missing[0]].prompt))
                return None
            if state.next is None or (not state.collect and (state.on or state.change)):
                return None  # wait for the caller
            name = state.next
        return None  # a loop of states that never wait: stay where we are

    def tool_result(self, ok: bool, answer: Mapping[str, object]) -> Reply:
        """The outcome of the current state's `call`: go `next` when the tool answered
        (`ok`; the declared fields of its answer become template values), else
        `on_failure`."""
        state = self._current
        if state.call is None or state.next is None or state.on_failure is None:
            raise ValueError(f"state {self._state!r} does not call a tool")
        if ok:
            tool = next(t for t in self._agent.tools if t.name == state.call)
            for field in tool.answer:
                value = answer.get(field)
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    self._answers[field] = str(value)
        parts: list[str] = []
        return self._reply(parts, self._enter(state.next if ok else state.on_failure, parts))

    def _arguments(self, tool_name: str) -> dict[str, Any]:
        """The slots named like the tool's parameters, as JSON values."""
        tool = next(t for t in self._agent.tools if t.name == tool_name)
        properties = tool.parameters.get("properties", {}) if isinstance(tool.parameters, dict) else {}
        out: dict[str, Any] = {}
        for name in properties:
            if name in self._values:
                out[name] = _json_value(self._values[name])
        return out

    def _go(self, target: str, tokens: list[Token]) -> Reply:
        """Follow a transition; values said in the same breath fill the new state's slots
        ("I'd like to book a table for four")."""
        self._misses = 0
        state = self._flow.states[target]
        if state.collect:
            found = extract_slots(tokens, self._agent.slots, state.collect, None, self._today)
            self._values.update({k: v for k, v in found.values.items() if k not in found.invalid})
        parts: list[str] = []
        return self._reply(parts, self._enter(target, parts))

    def _after_update(self, state: State) -> Reply:
        self._misses = 0
        parts: list[str] = []
        if state.collect:
            missing = [s for s in state.collect if s not in self._values]
            if missing:
                return self._ask(missing[0])
        if (state.collect or state.change) and state.next is not None:
            return self._reply(parts, self._enter(state.next, parts))
        return self._reply(parts, self._enter(self._state, parts))

    def _ask(self, slot: str) -> Reply:
        self._misses = 0
        self._asking = slot
        return self._reply([self._render(self._agent.slots[slot].prompt)], None)

    def _invalid(self, name: str) -> Reply:
        slot = self._agent.slots[name]
        self._asking = name
        bounds = {"min": say_bound(slot, slot.min), "max": say_bound(slot, slot.max)}
        message = slot.invalid or "Sorry, I can't accept that."
        parts = [self._render(message, bounds), self._render(slot.prompt)]
        return self._reply(parts, None)

    def _not_understood(self) -> Reply:
        if self._agent.fallback.to_llm:
            self._handoff = ""  # the LLM answers what the flow did not understand
            return self._reply([self._question()], None)
        return self._miss(self._agent.fallback.not_understood)

    def _miss(self, fallback: str) -> Reply:
        self._misses += 1
        target = self._agent.fallback.after_max_misses
        if self._misses >= self._agent.fallback.max_misses and target is not None:
            self._misses = 0
            parts: list[str] = []
            return self._reply(parts, self._enter(target, parts))
        return self._reply([self._render(fallback), self._question()], None)

    def _question(self) -> str:
        """What to ask again after a miss: the pending slot's question, else the state's."""
        if self._asking is not None:
            slot = self._agent.slots[self._asking]
            return self._render(slot.reprompt or slot.prompt)
        state = self._current
        return self._render(state.reprompt or state.say or "")

    # -- helpers ---------------------------------------------------------------------------

    def _candidates(self, state: State) -> list[str]:
        names = [*state.collect, *state.change, *self._values]
        if self._asking is not None:
            names.insert(0, self._asking)
        return list(dict.fromkeys(names))

    def _matched_intents(self, tokens: list[Token]) -> set[str]:
        matched = {name for name, i in self._agent.intents.items() if intent_matches(i, tokens)}
        answer = yes_or_no(words(tokens))
        if answer is not None:
            matched.add("yes" if answer else "no")
        return matched

    def _render(self, template: str, extra: Mapping[str, str] | None = None) -> str:
        values = {
            **self._answers,
            **{
                name: say_value(self._agent.slots[name], value, self._today)
                for name, value in self._values.items()
            },
        }
        return render_template(template, {**values, **(extra or {})})

    def _reply(self, parts: list[str], action: Action | None) -> Reply:
        handoff, self._handoff = self._handoff, None
        call, self._call = self._call, None
        return Reply(" ".join(p for p in parts if p), action, self._state, handoff, call)


def _json_value(value: SlotValue) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, clock_time):
        return value.strftime("%H:%M")
    return value
