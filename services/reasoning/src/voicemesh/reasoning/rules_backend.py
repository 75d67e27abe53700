"""The rule/flow engine as a conversation backend, and the default backend factory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

import aiohttp

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
from .tools import ToolBox, ToolResult, call_with_filler

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


@dataclass(frozen=True)
class FlowTools:
    """What a flow needs to call the agent's tools (`State.call`)."""

    toolbox: ToolBox
    http: Callable[[], aiohttp.ClientSession]
    mask: Callable[[str], str]  # for the ToolCall items reported out of the process
    on_error: Callable[[str], None] = lambda kind: None
    timeout_s: float | None = None


class RulesBackend(ConversationBackend):
    """Streams the FlowEngine's replies as word-group deltas, then the reply's action."""

    def __init__(
        self,
        agent: Agent,
        session: SessionInfo,
        history: History | None = None,
        max_words: int = 4,
        tools: FlowTools | None = None,
    ) -> None:
        super().__init__(agent, session, history)
        self.engine = FlowEngine(agent, session.today)
        self._max_words = max_words
        self._tools = tools

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
        return flow_items(self.engine, reply, self._tools, self._max_words)


async def flow_items(
    engine: FlowEngine, reply: Reply, tools: FlowTools | None, max_words: int = 4
) -> AsyncIterator[ResponseItem]:
    """A flow reply as a response, carrying out the tool calls it asks for on the way:
    its text, the tool's filler if the tool is slow, a `ToolCall` report, then the reply
    the flow gives for the tool's outcome (a flow without tools hears a failure)."""
    said = False
    while True:
        if said and reply.text:
            yield TextChunk(" ")
        async for item in reply_items(reply, max_words):
            said = said or isinstance(item, TextChunk)
            yield item
        call = reply.tool_call
        if call is None:
            return
        result: ToolResult | None = None
        if tools is not None:
            calling = call_with_filler(
                tools.toolbox, call.tool, json.dumps(call.arguments), session=tools.http(), timeout_s=tools.timeout_s
            )
            async with contextlib.aclosing(calling) as outcome:
                async for out in outcome:
                    if isinstance(out, str):
                        yield TextChunk((" " if said else "") + out)
                        said = True
                    else:
                        result = out
            if result is not None:
                if not result.ok:
                    tools.on_error("tool_failed")
                yield result.event(tools.mask)
        reply = engine.tool_result(result is not None and result.ok, _answer(result))


def _answer(result: ToolResult | None) -> dict[str, object]:
    if result is None or not result.ok:
        return {}
    try:
        body = json.loads(result.result_json)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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
