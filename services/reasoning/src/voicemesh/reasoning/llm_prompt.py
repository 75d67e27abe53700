"""The chat messages an LLM backend sends for one turn: the agent's instructions, the
knowledge retrieved for the turn, and the conversation as the caller heard it, with the
caller's personal data (in their words, the agent's replies, tool results) replaced by
placeholders. Pure: no I/O, no clock (the date comes in).

    prompt = Prompt(agent, redactor, history_messages=20)
    built = prompt.build(history, hits, today, values)    # built.messages, built.values

`values` is the conversation's placeholder map (placeholder -> what the caller said): pass
the one returned back in next turn, so a number keeps its placeholder for the whole call,
and restore the reply with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from voicemesh.agent import Agent
from voicemesh.mesh.pii import Redactor

from .history import Message
from .knowledge import Hit

SPEECH_RULES = (
    "You are speaking on a phone call: answer in one to three short spoken sentences, "
    "with no lists, markdown, emoji or URLs. Say numbers the way a person says them."
)
PLACEHOLDER_RULE = (
    "Personal details in the conversation appear as placeholders like [PHONE_1]; "
    "write a placeholder exactly as it appears to say that detail back."
)
KNOWLEDGE_INTRO = (
    "Facts from the knowledge base that may answer the caller (say you do not know "
    "rather than guess when they do not):"
)
HANDOFF_INTRO = (
    "For this one reply only (the conversation then goes back to its script, which will "
    "ask its own next question, so do not ask one):"
)
MAX_CACHED = 512  # redacted texts kept per call
INTERRUPTED_NOTE = " [the caller interrupted here]"


@dataclass(frozen=True)
class Built:
    messages: list[dict[str, Any]]
    values: dict[str, str]


class Prompt:
    """Builds the messages of one request for one agent."""

    def __init__(self, agent: Agent, redactor: Redactor | None, history_messages: int) -> None:
        if history_messages < 1:
            raise ValueError("history_messages must be at least 1")
        self._agent = agent
        self._redactor = redactor
        self._history_messages = history_messages
        # text -> (redacted text, the placeholders it used): every turn sends the same
        # history again, and a text keeps its placeholders once the call has them.
        self._seen: dict[str, tuple[str, dict[str, str]]] = {}

    def system(self, hits: Sequence[Hit], today: date, instructions: str = "") -> str:
        parts = [self._agent.prompt.strip() or f"You are {self._agent.name}, a helpful phone agent."]
        if instructions.strip():
            parts.append(f"{HANDOFF_INTRO} {instructions.strip()}")
        parts.append(SPEECH_RULES)
        if self._redactor is not None:
            parts.append(PLACEHOLDER_RULE)
        parts.append(f"Today is {today.strftime('%A')}, {today.isoformat()}.")
        if hits:
            facts = "\n".join(f"- ({hit.heading or hit.source}) {' '.join(hit.text.split())}" for hit in hits)
            parts.append(f"{KNOWLEDGE_INTRO}\n{facts}")
        return "\n\n".join(parts)

    def build(
        self,
        history: Sequence[Message],
        hits: Sequence[Hit],
        today: date,
        values: Mapping[str, str],
        instructions: str = "",
    ) -> Built:
        """The system message, then the last `history_messages` messages (starting at a
        caller message, so the model never sees an answer without its question)."""
        recent = list(history)[-self._history_messages :]
        while recent and recent[0].role != "user" and len(recent) > 1:
            recent = recent[1:]
        known = dict(values)
        # The system prompt is the agent's own text and knowledge (the business's number is
        # meant to be said): only what came from the caller's side is redacted.
        system = self.system(hits, today, instructions)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for message in recent:
            if message.role == "system":
                continue
            text = message.text + (INTERRUPTED_NOTE if message.interrupted else "")
            text, known = self._redact(text, known)
            messages.append({"role": message.role, "content": text})
        return Built(messages, known)

    def redact(self, text: str, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """`text` as the model may see it, and the placeholder map grown by what it held."""
        return self._redact(text, dict(values))

    def _redact(self, text: str, values: dict[str, str]) -> tuple[str, dict[str, str]]:
        if self._redactor is None:
            return text, values
        cached = self._seen.get(text)
        if cached is not None and all(values.get(k) == v for k, v in cached[1].items()):
            return cached[0], values
        red = self._redactor.redact(text, values=values)
        used = {k: v for k, v in red.values.items() if k in red.text}
        if len(self._seen) < MAX_CACHED:
            self._seen[text] = (red.text, used)
        return red.text, red.values
