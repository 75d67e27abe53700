"""The conversation backend interface: what the servicer needs from a rule engine, an
OpenAI-compatible LLM, a RAG pipeline or a tool-calling agent.

One backend instance serves one session (one caller, one agent). The servicer drives it:

    backend = factory(agent, session)         # per session
    await backend.open()                      # connect, load memory ... (may fail)
    async for item in backend.greet(rid):     # the agent speaks first
        ...
    async for item in backend.respond(rid, turn_id, text):   # one caller turn
        ...
    backend.cancel(rid, heard_text)           # barge-in: the caller heard only this
    snap = backend.snapshot()                 # between responses: plain data to store
    await backend.aclose()

    other = factory(agent, session); other.restore(snap)   # another replica carries on

A response is a stream of `ResponseItem`s:
- `TextChunk`: the next piece of reply text, sent on as a delta at once so tts can start
  speaking before the reply is complete (an LLM backend yields its token deltas; the rule
  engine yields small word groups);
- `ToolCall`: a tool the backend called while answering (reported as an event);
- `AgentAction`: what the edge should do once this response has been played (hang up,
  transfer, send DTMF). The servicer sends it right after the response's end.

Stopping a response is plain asyncio cancellation of the iteration (or `aclose()` of the
iterator): implementations must stop promptly and not swallow `CancelledError`. The base
class keeps `history` true: the user message is recorded when `respond` is called, the
assistant message when the stream ends (with what was generated), and `cancel` cuts it down
to what the caller heard. Subclasses implement `_greet` and `_respond` only; they read
`self.history` for context (an LLM backend sends it as the chat messages).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from voicemesh.agent import Agent

from .history import History
from .snapshot import ConversationSnapshot


@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments_json: str
    result_json: str
    duration_ms: int


@dataclass(frozen=True)
class AgentAction:
    """hangup (value: reason), transfer (value: target), dtmf (value: digits)."""

    kind: Literal["hangup", "transfer", "dtmf"]
    value: str = ""


ResponseItem = TextChunk | ToolCall | AgentAction


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    # The date where the agent is (its timezone), for "today" and "tomorrow".
    today: date
    # Caller metadata from the transport. Personal data: never logged.
    metadata: Mapping[str, str] = field(default_factory=dict)


class BackendUnavailable(RuntimeError):
    """The agent asks for a backend this service cannot provide."""


class ConversationBackend(ABC):
    """One conversation. See the module docstring for the contract."""

    def __init__(self, agent: Agent, session: SessionInfo, history: History | None = None) -> None:
        self.agent = agent
        self.session = session
        self.history = history if history is not None else History()

    async def open(self) -> None:
        """Prepare the session (connect to a model server, load memory). Default: nothing."""
        return None

    async def aclose(self) -> None:
        """Release what `open` took. Default: nothing."""
        return None

    def greet(self, response_id: str) -> AsyncIterator[ResponseItem]:
        """The agent's first words (may yield nothing)."""
        return self._recorded(response_id, self._greet(response_id))

    def respond(self, response_id: str, turn_id: str, text: str) -> AsyncIterator[ResponseItem]:
        """The reply to one caller turn."""
        self.history.add_user(text, turn_id)
        return self._recorded(response_id, self._respond(response_id, text))

    def snapshot(self) -> ConversationSnapshot:
        """The conversation so far as plain data, for another instance to `restore` (take it
        between responses: a response being generated is not in it yet)."""
        return ConversationSnapshot(history=self.history.messages)

    def restore(self, snapshot: ConversationSnapshot) -> None:
        """Carry on from `snapshot` instead of starting afresh (call before `open`).
        Raises SnapshotError if it does not fit this agent."""
        self.history.restore(snapshot.history)

    def cancel(self, response_id: str, heard_text: str) -> bool:
        """The caller heard only `heard_text` of a response (barge-in). Call it after the
        response's stream has stopped. False if the response is unknown."""
        return self.history.heard(response_id, heard_text)

    @abstractmethod
    def _greet(self, response_id: str) -> AsyncIterator[ResponseItem]: ...

    @abstractmethod
    def _respond(self, response_id: str, text: str) -> AsyncIterator[ResponseItem]: ...

    async def _recorded(
        self, response_id: str, items: AsyncIterator[ResponseItem]
    ) -> AsyncIterator[ResponseItem]:
        parts: list[str] = []
        try:
            async for item in items:
                if isinstance(item, TextChunk):
                    parts.append(item.text)
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
            text = "".join(parts).strip()
            if text:
                self.history.add_assistant(text, response_id)


BackendFactory = Callable[[Agent, SessionInfo], ConversationBackend]
