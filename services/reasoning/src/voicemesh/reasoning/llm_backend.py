"""The OpenAI-compatible LLM as a conversation backend: one caller turn becomes one or more
streamed chat completions (a tool round in between), spoken as the tokens arrive.

Per turn:
- the caller's words retrieve up to three knowledge chunks into the system prompt;
- the history goes out as the caller heard it, cut to the agent's `history_messages`, with
  personal data as placeholders (`llm_prompt`); placeholders in the reply are restored as
  it streams (`placeholders`);
- a tool call runs the agent's HTTP tool with the caller's real values, its answer goes
  back redacted, and the tool's `filler` is said if it is slow; a built-in (hang up,
  transfer, send DTMF) becomes the response's action;
- a transient failure before the first token is retried (`retries`), then the `fallback`
  endpoints are tried in order; when all fail the agent says `fallback.unavailable`. A
  failure after words were spoken ends the response there (they were heard).
- stopping the response (barge-in, preemption) closes the HTTP stream at once.

What leaves the process for a `ToolCall` event is masked (`[PHONE]`), never restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import aiohttp

from voicemesh.agent import Agent, OpenAIBackendConfig
from voicemesh.mesh.pii import Redactor

from .backend import AgentAction, ConversationBackend, ResponseItem, SessionInfo, TextChunk, ToolCall
from .builtin_actions import BuiltinKind, builtin_tools, parse_builtin
from .history import History
from .knowledge import KnowledgeIndex
from .llm_prompt import Prompt
from .openai_client import ChatClient, LlmError, TransientLlmError
from .openai_wire import ChatRequest, Finished, FinishReason, TextDelta, ToolCallDone
from .placeholders import PlaceholderRestorer
from .rules import FlowEngine
from .rules_backend import FlowTools, flow_items
from .snapshot import ConversationSnapshot
from .tools import ToolBox, ToolResult, call_with_filler

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
KNOWLEDGE_HITS = 3
BUILTIN_OK = json.dumps({"ok": True})

Clock = Callable[[], float]


@dataclass(frozen=True)
class Target:
    """One endpoint to ask, with the model name it serves."""

    client: ChatClient
    model: str

    @property
    def host(self) -> str:
        return self.client.endpoint.host


@dataclass(frozen=True)
class LlmAgent:
    """What every call of one agent shares, built once when the agent loads: where to ask
    (primary first, then the fallbacks), its tools, its knowledge, its redactor."""

    agent: Agent
    config: OpenAIBackendConfig
    targets: tuple[Target, ...]
    toolbox: ToolBox
    knowledge: KnowledgeIndex | None
    redactor: Redactor | None
    http: Callable[[], aiohttp.ClientSession]  # the pooled session tools are called over

    @cached_property
    def mask(self) -> Callable[[str], str]:
        """The one-way mask for what is reported out of the process (tool calls): the
        agent's kinds, or every built-in kind when it sends raw text to the model."""
        return (self.redactor or Redactor()).mask


class _Failed(Exception):
    """Every endpoint failed before saying a word."""


class LlmBackend(ConversationBackend):
    """One call's conversation with an OpenAI-compatible model."""

    def __init__(
        self,
        shared: LlmAgent,
        session: SessionInfo,
        history: History | None = None,
        *,
        clock: Clock = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(shared.agent, session, history)
        self._shared = shared
        self._config = shared.config
        self._prompt = Prompt(shared.agent, shared.redactor, shared.config.history_messages)
        self._values: dict[str, str] = {}  # placeholder -> what the caller said, for the call
        self._clock = clock
        self._on_error = on_error or (lambda kind: None)
        # An agent with a flow: the flow leads, and hands single turns to the LLM.
        self.engine = FlowEngine(shared.agent, session.today) if shared.agent.flow is not None else None
        self._tools = [*shared.toolbox.openai_tools(), *builtin_tools()] if shared.config.offer_tools else []
        timeout_s = self._config.response_timeout_ms / 1000
        self._flow_tools = FlowTools(shared.toolbox, shared.http, shared.mask, self._on_error, timeout_s)

    def snapshot(self) -> ConversationSnapshot:
        # The placeholder map is rebuilt from the history on the next turn: the same
        # values get the same placeholders again, so nothing else needs keeping.
        snap = super().snapshot()
        return replace(snap, flow=self.engine.snapshot()) if self.engine is not None else snap

    def restore(self, snapshot: ConversationSnapshot) -> None:
        if self.engine is not None:
            if snapshot.flow is None:
                self.engine = None  # the model had left the flow (end_flow)
            else:
                self.engine.restore(snapshot.flow)
        super().restore(snapshot)

    async def _greet(self, response_id: str) -> AsyncIterator[ResponseItem]:
        if self.engine is not None:
            async for item in flow_items(self.engine, self.engine.start(), self._flow_tools):
                yield item
            return
        greeting = self.agent.greeting.strip()
        if greeting:
            yield TextChunk(greeting)

    async def _respond(self, response_id: str, text: str) -> AsyncIterator[ResponseItem]:
        if self.engine is None:
            async for item in self._llm_turn(text):
                yield item
            return
        reply = self.engine.respond(text)
        if reply.handoff is not None:
            said = False
            async for item in self._llm_turn(text, reply.handoff):
                said = said or isinstance(item, TextChunk)
                yield item
            if self.engine is None:
                return  # the model left the flow (end_flow): the flow says no more
            if said and reply.text:
                yield TextChunk(" ")
        async for item in flow_items(self.engine, reply, self._flow_tools):
            yield item

    async def _llm_turn(self, text: str, instructions: str = "") -> AsyncIterator[ResponseItem]:
        """The LLM's answer to the caller's `text` (with the flow's `instructions`)."""
        deadline = self._clock() + self._config.response_timeout_ms / 1000
        hits = self._shared.knowledge.search(text, KNOWLEDGE_HITS) if self._shared.knowledge else []
        built = self._prompt.build(self.history.messages, hits, self.session.today, self._values, instructions)
        self._values = built.values
        messages: list[dict[str, Any]] = built.messages
        actions: list[AgentAction] = []
        spoken = False
        # end_flow is offered only while there is a flow to leave.
        tools = [t for t in self._tools if self.engine is not None or t["function"]["name"] != "end_flow"]
        for round_number in range(MAX_TOOL_ROUNDS + 1):
            last_round = round_number == MAX_TOOL_ROUNDS
            request = ChatRequest(
                model="",  # set per target
                messages=messages,
                temperature=self._config.temperature,
                max_tokens=self._config.max_tokens,
                tools=() if last_round else tools,
                tool_choice="auto" if tools and not last_round else None,
            )
            restorer = PlaceholderRestorer(self._values)
            said: list[str] = []
            calls: list[ToolCallDone] = []
            try:
                async for event in self._complete(request, deadline, spoken):
                    if isinstance(event, TextDelta):
                        said.append(event.text)
                        out = restorer.feed(event.text)
                        if out:
                            spoken = True
                            yield TextChunk(out)
                    elif isinstance(event, ToolCallDone):
                        calls.append(event)
            except _Failed:
                yield TextChunk(self.agent.fallback.unavailable)
                return
            tail = restorer.flush()
            if tail:
                spoken = True
                yield TextChunk(tail)
            if not calls:
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(said) or None,
                    "tool_calls": [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                        for c in calls
                    ],
                }
            )
            asked_tool = False
            for call in calls:
                result_json, event, action = None, None, None
                try:
                    builtin = parse_builtin(call.name, call.arguments_json)
                except ValueError as e:
                    result_json = json.dumps({"error": str(e)})
                    builtin = None
                if builtin is not None and builtin.kind is BuiltinKind.END_FLOW:
                    if self.engine is not None:
                        log.info("flow left for the llm", extra={"state": self.engine.state})
                    self.engine = None  # the LLM has the rest of the call
                    result_json = BUILTIN_OK
                elif builtin is not None:
                    action = builtin.action()
                    if action is not None:
                        restored = Redactor.restore(action.value, self._values)
                        actions.append(AgentAction(action.kind, restored))
                    result_json = BUILTIN_OK
                elif result_json is None:
                    asked_tool = True
                    async for item in self._run_tool(call, deadline):
                        if isinstance(item, TextChunk):
                            spoken = True
                            yield item
                        else:
                            event, result_json = item
                    if event is not None:
                        yield event
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result_json or "{}"})
            if not asked_tool:
                break  # only built-ins: the model said what it had to with them
        for action in actions:
            yield action

    async def _run_tool(
        self, call: ToolCallDone, deadline: float
    ) -> AsyncIterator[TextChunk | tuple[ToolCall, str]]:
        """The filler if the tool is slow, then (the masked event, the redacted result)."""
        arguments = Redactor.restore(call.arguments_json, self._values)
        left = max(0.0, deadline - self._clock())
        result: ToolResult | None = None
        calling = call_with_filler(
            self._shared.toolbox, call.name, arguments, session=self._shared.http(), timeout_s=left
        )
        async with contextlib.aclosing(calling) as outcome:
            async for item in outcome:
                if isinstance(item, str):
                    yield TextChunk(item + " ")
                else:
                    result = item
        assert result is not None
        if not result.ok:
            self._on_error("tool_failed")
        shown, self._values = self._prompt.redact(result.result_json, self._values)
        yield (result.event(self._shared.mask), shown)

    async def _complete(
        self, request: ChatRequest, deadline: float, spoken: bool
    ) -> AsyncIterator[TextDelta | ToolCallDone]:
        """The events of one completion from the first endpoint that gives one. Raises
        _Failed when all fail before their first event (and nothing was said yet this
        turn); a failure after the first event ends the completion quietly."""
        attempts = [t for t in self._shared.targets for _ in range(1 + self._config.retries)]
        last: LlmError | None = None
        for index, target in enumerate(attempts):
            if index and attempts[index - 1] is target and last is not None and not last.transient:
                continue  # a permanent error: the same endpoint will not do better
            left = deadline - self._clock()
            if left <= 0:
                break
            if last is not None and last.retry_after_s and attempts[index - 1] is target:
                if last.retry_after_s >= left:
                    continue
                await asyncio.sleep(last.retry_after_s)
            started = False
            try:
                stream = target.client.stream(
                    _for(request, target.model),
                    first_token_timeout_s=min(self._config.first_token_timeout_ms / 1000, left),
                    total_timeout_s=left,
                )
                async with stream:
                    async for event in stream:
                        if isinstance(event, Finished):
                            if event.reason is FinishReason.UNSPECIFIED and not started:
                                raise TransientLlmError(
                                    "the stream ended without an answer", host=target.host
                                )
                            if event.reason is FinishReason.UNSPECIFIED:
                                self._on_error("llm_cut_short")
                            return
                        started = True
                        yield event
                return
            except LlmError as e:
                self._on_error("llm_transient" if e.transient else "llm_failed")
                log.warning(
                    "llm request failed",
                    extra={
                        "host": e.host,
                        "status": e.status,
                        "transient": e.transient,
                        "error": str(e),
                        "attempt": index + 1,
                    },
                )
                if started:
                    return
                last = e
        if spoken:
            return
        raise _Failed()


def _for(request: ChatRequest, model: str) -> ChatRequest:
    return replace(request, model=model)
