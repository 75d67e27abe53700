"""`Reasoning.Converse`: one conversation per stream.

    caller -> start            <- ready (AgentProfile)
                               <- greeting: delta ... end, [action]
    caller -> turn (t1)        <- delta(in_reply_to=t1) ... end(in_reply_to=t1), [action]
    caller -> cancel (r2, heard_text)   stops r2: no more deltas, no end, no action
    caller -> cancel (turn t3)          the same for the response to t3, even before its
                                        first delta (a queued t3 is dropped unanswered)
    caller -> dtmf (t4, "4")   <- delta(in_reply_to=t4) ... end, [action]

A reader task takes requests off the stream: turns go to a bounded queue (keys the caller
pressed too, as a turn whose text is the digits), cancels act at once (control before
queued data). A writer task answers the queued turns one at a time, streaming the
backend's items; a cancel for the response being streamed stops it between two items.
A turn that arrives while another is being answered preempts it: that response stops and
ends with `preempted` (its text is what was sent, its actions are dropped), and the new
turn is answered next, so a doomed generation never holds up the turn that replaced it.
Every response that is not cancelled ends with one `end`, also one with no text.

The history keeps what the caller heard (`heard_text`), also for a cancel that comes after
the response was complete (the usual barge-in: the caller interrupts playout).
A response counts in `voicemesh_requests_in_flight` from the moment it is asked of the backend
until it is complete, cancelled, failed or its stream is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn, TypeVar
from zoneinfo import ZoneInfo

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from voicemesh.agent import Agent
from voicemesh.mesh.events import EventSink, subject_for
from voicemesh.mesh.metrics import ServiceMetrics
from voicemesh.mesh.tracing import incoming_context
from voicemesh.v1 import events_pb2, reasoning_pb2, reasoning_pb2_grpc

from . import messages
from .backend import (
    AgentAction,
    BackendFactory,
    BackendUnavailable,
    ConversationBackend,
    ResponseItem,
    SessionInfo,
    TextChunk,
    ToolCall,
)
from .catalog import AgentCatalog, UnknownAgentError
from .rules_backend import default_backend_factory
from .streams import until_stopped

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TURN_BACKLOG = 8
_ANSWERS_KEPT = 64
MAX_DTMF_DIGITS = 32
_DTMF_DIGITS = re.compile(rf"[0-9*#A-D]{{1,{MAX_DTMF_DIGITS}}}")


class _PeerError(Exception):
    """Something the peer did wrong: ends its stream with `code`."""

    def __init__(self, code: grpc.StatusCode, details: str, kind: str, *, counted: bool = False) -> None:
        super().__init__(details)
        self.code, self.details, self.kind, self.counted = code, details, kind, counted


@dataclass
class _Response:
    response_id: str
    in_reply_to: str
    received_at: float  # when the turn (or the start, for the greeting) arrived
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    heard_text: str = ""
    # Stopped by a newer turn rather than by the caller's cancel.
    preempted: bool = False


@dataclass
class _Session:
    session_id: str
    agent: Agent
    backend: ConversationBackend
    trace_ctx: otel_context.Context
    responses: int = 0
    current: _Response | None = None
    ended_by: str = ""
    # Turns waiting in the queue, and those of them the caller cancelled before an answer.
    queued: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    # turn id -> the response that answered it (recent ones), for a cancel by turn.
    answered: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def next_response_id(self) -> str:
        self.responses += 1
        return f"{self.session_id}-r{self.responses}"

    def remember_answer(self, turn_id: str, response_id: str) -> None:
        if not turn_id:
            return
        self.answered[turn_id] = response_id
        while len(self.answered) > _ANSWERS_KEPT:
            self.answered.popitem(last=False)


class ReasoningServicer(reasoning_pb2_grpc.ReasoningServicer):
    """The Reasoning service. Collaborators come in; nothing global.

    `backend_factory` picks the conversation backend of a session (default: the rule
    engine for `backend.kind: rules`). `clock` (monotonic seconds) times latencies;
    `wall_clock` (an aware datetime) gives each session's "today" in the agent's timezone.
    """

    def __init__(
        self,
        catalog: AgentCatalog,
        metrics: ServiceMetrics,
        events: EventSink,
        tracer: trace.Tracer,
        *,
        backend_factory: BackendFactory = default_backend_factory,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        turn_backlog: int = DEFAULT_TURN_BACKLOG,
    ) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._events = events
        self._tracer = tracer
        self._backend_factory = backend_factory
        self._clock = clock
        self._wall_clock = wall_clock
        self._turn_backlog = turn_backlog

    @property
    def catalog(self) -> AgentCatalog:
        return self._catalog

    async def Converse(
        self,
        request_iterator: AsyncIterator[reasoning_pb2.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        requests = aiter(request_iterator)
        started_at = self._clock()
        start = await self._read_start(requests, context)
        try:
            agent = self._catalog.for_call(start.agent, start.metadata.get("to", ""))
        except UnknownAgentError as exc:
            await self._abort(context, grpc.StatusCode.NOT_FOUND, str(exc), "unknown_agent")
        info = SessionInfo(start.session_id, self._today(agent), dict(start.metadata))
        try:
            backend = self._backend_factory(agent, info)
        except BackendUnavailable as exc:
            await self._abort(context, grpc.StatusCode.UNIMPLEMENTED, str(exc), "backend_unavailable")
        session = _Session(start.session_id, agent, backend, incoming_context(context.invocation_metadata()))
        ids = {"session_id": session.session_id, "agent": agent.id}
        self._metrics.session_started()
        log.info("session started", extra=ids)
        outcome = "error"
        failure: _PeerError | None = None
        try:
            failure = await self._converse(session, requests, context, started_at)
            if failure is None:
                outcome = session.ended_by or "closed"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            with contextlib.suppress(Exception):
                await backend.aclose()
            self._metrics.session_ended(outcome)
            log.info("session ended", extra={**ids, "outcome": outcome, "responses": session.responses})
        if failure is not None:
            await self._abort(context, failure.code, failure.details, failure.kind, count=not failure.counted)

    async def _converse(
        self,
        session: _Session,
        requests: AsyncIterator[reasoning_pb2.ConverseRequest],
        context: grpc.aio.ServicerContext,
        started_at: float,
    ) -> _PeerError | None:
        """Run the session until the caller closes its side; the error that ended it, if any."""
        failure: _PeerError | None = None
        try:
            await session.backend.open()
            await context.write(reasoning_pb2.ConverseResponse(ready=messages.ready(session.agent)))
            turns: asyncio.Queue[tuple[reasoning_pb2.UserTurn, float] | None] = asyncio.Queue(
                self._turn_backlog
            )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(session, requests, turns), name="reasoning-reader")
                tg.create_task(self._write(session, turns, context, started_at), name="reasoning-writer")
        except* _PeerError as group:
            failure = group.exceptions[0]  # type: ignore[assignment]
        except* Exception:
            log.exception("reasoning backend failed", extra={"session_id": session.session_id})
            failure = _PeerError(grpc.StatusCode.INTERNAL, "the reasoning backend failed", "backend")
        return failure

    # -- the two halves of a stream -------------------------------------------------------

    async def _read(
        self,
        session: _Session,
        requests: AsyncIterator[reasoning_pb2.ConverseRequest],
        turns: asyncio.Queue[tuple[reasoning_pb2.UserTurn, float] | None],
    ) -> None:
        async for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "turn":
                self._enqueue(session, turns, request.turn)
            elif kind == "dtmf":
                self._enqueue(session, turns, dtmf_turn(request.dtmf))
            elif kind == "cancel":
                self._cancel(session, request.cancel)
            elif kind == "start":
                raise _PeerError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "`start` may only be the first message of a stream",
                    "duplicate_start",
                )
            else:
                raise _PeerError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "empty ConverseRequest: set one of start, turn, cancel, dtmf",
                    "empty_request",
                )
        await turns.put(None)

    def _enqueue(
        self,
        session: _Session,
        turns: asyncio.Queue[tuple[reasoning_pb2.UserTurn, float] | None],
        turn: reasoning_pb2.UserTurn,
    ) -> None:
        try:
            turns.put_nowait((turn, self._clock()))
        except asyncio.QueueFull:
            # Counted now: the stream can only end once the response in flight has stopped.
            self._metrics.error("turn_backlog")
            raise _PeerError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self._turn_backlog} turns are waiting for a response",
                "turn_backlog",
                counted=True,
            ) from None
        session.queued.add(turn.turn_id)
        current = session.current
        if current is not None and not current.cancel_requested.is_set():
            current.preempted = True  # its answer is stale: the newer turn goes first
            current.cancel_requested.set()

    async def _write(
        self,
        session: _Session,
        turns: asyncio.Queue[tuple[reasoning_pb2.UserTurn, float] | None],
        context: grpc.aio.ServicerContext,
        started_at: float,
    ) -> None:
        greeting = _Response(session.next_response_id(), "", started_at)
        await self._deliver(session, greeting, session.backend.greet(greeting.response_id), context)
        while (item := await turns.get()) is not None:
            turn, received_at = item
            session.queued.discard(turn.turn_id)
            if turn.turn_id in session.dropped:
                session.dropped.discard(turn.turn_id)  # cancelled while it waited
                continue
            response = _Response(session.next_response_id(), turn.turn_id, received_at)
            session.remember_answer(turn.turn_id, response.response_id)
            items = session.backend.respond(response.response_id, turn.turn_id, turn.text)
            await self._deliver(session, response, items, context)

    def _cancel(self, session: _Session, cancel: reasoning_pb2.CancelResponse) -> None:
        """Stop a response named by its id or by the turn it answers (see the proto)."""
        current = session.current
        rid, turn_id = cancel.response_id, cancel.turn_id
        if current is not None and (
            (rid and current.response_id == rid) or (not rid and turn_id and current.in_reply_to == turn_id)
        ):
            current.heard_text = cancel.heard_text
            current.preempted = False  # the caller's cancel wins: no end goes out
            current.cancel_requested.set()
            return
        if not rid and turn_id in session.queued:
            session.dropped.add(turn_id)
            self._metrics.dropped("cancelled_turn")  # never answered: the caller moved on
            return
        rid = rid or session.answered.get(turn_id, "")
        if not rid or not session.backend.cancel(rid, cancel.heard_text):
            log.debug(
                "cancel for an unknown response",
                extra={"session_id": session.session_id, "response_id": rid, "turn_id": turn_id},
            )

    # -- one response ----------------------------------------------------------------------

    async def _deliver(
        self,
        session: _Session,
        response: _Response,
        items: AsyncIterator[ResponseItem],
        context: grpc.aio.ServicerContext,
    ) -> None:
        rid = response.response_id
        parts: list[str] = []
        actions: list[AgentAction] = []
        first_token_s: float | None = None
        cancelled = False
        session.current = response
        with (
            self._metrics.in_flight(),
            self._tracer.start_as_current_span(
                "reasoning.response",
                context=session.trace_ctx,
                attributes={
                    "voicemesh.session_id": session.session_id,
                    "voicemesh.response_id": rid,
                    "voicemesh.in_reply_to": response.in_reply_to,
                    "voicemesh.agent": session.agent.id,
                },
            ) as span,
        ):
            try:
                async with contextlib.aclosing(until_stopped(items, response.cancel_requested)) as stream:
                    async for item in stream:
                        if isinstance(item, TextChunk):
                            if not item.text:
                                continue
                            if first_token_s is None:
                                first_token_s = self._clock() - response.received_at
                                self._metrics.observe_stage("first_token", first_token_s)
                            parts.append(item.text)
                            await context.write(messages.delta(rid, response.in_reply_to, item.text))
                        elif isinstance(item, ToolCall):
                            await context.write(messages.tool_call(rid, item))
                        else:
                            actions.append(item)
                cancelled = response.cancel_requested.is_set() and not response.preempted
                if not cancelled:
                    text = "".join(parts)
                    await context.write(
                        reasoning_pb2.ConverseResponse(
                            end=reasoning_pb2.ResponseEnd(
                                response_id=rid,
                                text=text,
                                in_reply_to=response.in_reply_to,
                                preempted=response.preempted,
                            )
                        )
                    )
                    if response.preempted:
                        actions = []  # the reply they belonged to was never finished
                    for action in actions:
                        await context.write(messages.action(rid, action))
                        if action.kind != "dtmf":
                            session.ended_by = action.kind
                    self._metrics.observe_stage("response", self._clock() - response.received_at)
            finally:
                session.current = None
            if response.preempted:
                session.backend.cancel(rid, "".join(parts))  # at most what was sent was heard
            elif response.cancel_requested.is_set():
                session.backend.cancel(rid, response.heard_text)
            first_token_ms = round(first_token_s * 1000) if first_token_s is not None else 0
            span.set_attribute("voicemesh.cancelled", cancelled)
            span.set_attribute("voicemesh.preempted", response.preempted)
            span.set_attribute("voicemesh.chars", sum(len(p) for p in parts))
            span.set_attribute("voicemesh.first_token_ms", first_token_ms)
        self._events.emit(
            session.session_id,
            response=events_pb2.ResponsePublished(
                response_id=rid,
                in_reply_to=response.in_reply_to,
                text="".join(parts),
                first_token_ms=first_token_ms,
                cancelled=cancelled or response.preempted,
            ),
        )

    # -- helpers -----------------------------------------------------------------------------

    async def _read_start(
        self,
        requests: AsyncIterator[reasoning_pb2.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> reasoning_pb2.SessionStart:
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            await self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the stream ended before `start`",
                "bad_first_message",
            )
        kind = first.WhichOneof("kind")
        if kind != "start":
            await self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the first message must be `start`, got `{kind or 'an empty message'}`",
                "bad_first_message",
            )
        try:
            subject_for(first.start.session_id, "check")
        except ValueError:
            await self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"start.session_id {first.start.session_id!r} must be a non-empty token "
                "without dots, spaces or wildcards",
                "bad_first_message",
            )
        return first.start

    async def _abort(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str, kind: str, *, count: bool = True
    ) -> NoReturn:
        if count:
            self._metrics.error(kind)
        log.warning("stream refused", extra={"code": code.name, "kind": kind})
        await context.abort(code, details)
        raise AssertionError("context.abort returned")  # pragma: no cover

    def _today(self, agent: Agent) -> date:
        now = self._wall_clock()
        return (now.astimezone(ZoneInfo(agent.timezone)) if agent.timezone else now.astimezone()).date()


def dtmf_turn(dtmf: reasoning_pb2.CallerDtmf) -> reasoning_pb2.UserTurn:
    """The caller's key presses as a turn whose text is the digits, answered like speech
    (`in_reply_to` = the dtmf's turn_id). Raises _PeerError for digits that are not keys;
    the message never repeats them (they may be a PIN or a card number)."""
    if not _DTMF_DIGITS.fullmatch(dtmf.digits):
        raise _PeerError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"dtmf.digits must be 1 to {MAX_DTMF_DIGITS} keys, each one of 0-9, *, #, A-D",
            "bad_dtmf",
        )
    return reasoning_pb2.UserTurn(turn_id=dtmf.turn_id, text=dtmf.digits, confidence=1.0)


def build(
    agents_dir: Path,
    default_agent: str,
    metrics: ServiceMetrics,
    events: EventSink,
    tracer: trace.Tracer,
) -> ReasoningServicer:
    """The loading step and the servicer: loads every agent file in `agents_dir` (raises
    AgentFileError naming file:line, or CatalogError) and returns the servicer."""
    return ReasoningServicer(AgentCatalog(agents_dir, default_agent), metrics, events, tracer)
