"""The rule/flow engine as a conversation backend, and the default backend factory."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace

from voicemesh.agent import Agent

from .backend import (
    AgentAction,
    BackendUnavailable,
    ConversationBackend,
    ResponseItem,
    SessionInfo,
    TextChunk,
)
from .history import History
from .rules import FlowEngine, Reply
from .snapshot import ConversationSnapshot, SnapshotError

_WORD = re.compile(r"\S+\s*")
_CLAUSE_END = (",", ".", "!", "?", ";", ":")


def word_groups(text: str, max_words: int = 4) -> list[str]:
    """Split reply text into small deltas that concatenate back to `text`: a group ends at
    a clause mark or after `max_words` words, so tts gets its first clause early."""
    groups: list[str] = []
    current: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        current.append(word)
        if len(current) >= max_words or word.rstrip().endswith(_CLAUSE_END):
            groups.append("".join(current))
            current = []
    if current:
        groups.append("".join(current))
    lead = text[: len(text) - len(text.lstrip())]
    if lead and groups:
        groups[0] = lead + groups[0]
    return groups


class RulesBackend(ConversationBackend):
    """Streams the FlowEngine's replies as word-group deltas, then the reply's action."""

    def __init__(
        self, agent: Agent, session: SessionInfo, history: History | None = None, max_words: int = 4
    ) -> None:
        super().__init__(agent, session, history)
        self.engine = FlowEngine(agent, session.today)
        self._max_words = max_words

    def snapshot(self) -> ConversationSnapshot:
        return replace(super().snapshot(), flow=self.engine.snapshot())

    def restore(self, snapshot: ConversationSnapshot) -> None:
        if snapshot.flow is None:
            raise SnapshotError("a rule-engine conversation's snapshot needs its flow state")
        self.engine.restore(snapshot.flow)
        super().restore(snapshot)

    async def _greet(self, response_id: str) -> AsyncIterator[ResponseItem]:
        async for item in self._stream(self.engine.start()):
            yield item

    async def _respond(self, response_id: str, text: str) -> AsyncIterator[ResponseItem]:
        async for item in self._stream(self.engine.respond(text)):
            yield item

    def _stream(self, reply: Reply) -> AsyncIterator[ResponseItem]:
        return reply_items(reply, self._max_words)


async def reply_items(reply: Reply, max_words: int = 4) -> AsyncIterator[ResponseItem]:
    """A flow reply as a response: its text in word groups, then its action."""
    for group in word_groups(reply.text, max_words):
        yield TextChunk(group)
        await asyncio.sleep(0)  # let a cancel from the caller in between deltas
    if reply.action is not None:
        if reply.action.kind == "transfer":
            yield AgentAction("transfer", reply.action.target)
        else:
            yield AgentAction("hangup", f"flow ended in state {reply.state}")


def default_backend_factory(agent: Agent, session: SessionInfo) -> ConversationBackend:
    """The backend an agent file asks for. Raises BackendUnavailable for kinds this build
    does not provide yet."""
    if agent.backend.kind == "rules":
        return RulesBackend(agent, session)
    raise BackendUnavailable(
        f"agent {agent.id!r} uses backend {agent.backend.kind!r}, which this reasoning service "
        "does not provide yet (available: rules)"
    )
