"""The responses of one synthesis stream, in order: pure bookkeeping, no asyncio, no clock.

The stream's reader feeds every request in as soon as it arrives (`add_text`, `end_text`,
`cancel`, `close_input`) — none of them waits, so a cancel is applied the moment it is read,
before any text queued ahead of it is spoken. The speaker asks `next_step()` for work: the
next clause of the oldest open response, the end of that response, or nothing yet.

Limits keep it bounded: at most `max_responses` open responses and `max_pending_chars`
characters of text not yet spoken; a client that exceeds them gets `LimitExceeded`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .chunker import ClauseChunker


class ProtocolError(ValueError):
    """The client broke the stream's rules (maps to INVALID_ARGUMENT)."""


class LimitExceeded(ValueError):
    """The client queued more than the stream holds (maps to RESOURCE_EXHAUSTED)."""


@dataclass(eq=False)
class Response:
    response_id: str
    chunker: ClauseChunker
    first_text_at: float
    clauses: deque[str] = field(default_factory=deque)
    ended: bool = False
    cancelled: bool = False
    finished: bool = False  # its "end" mark was sent
    # Filled in by whoever speaks it.
    started: bool = False
    frames_sent: int = 0
    first_audio_at: float | None = None

    @property
    def pending_chars(self) -> int:
        return sum(len(c) for c in self.clauses) + len(self.chunker.pending)


@dataclass(frozen=True)
class Clause:
    response: Response
    text: str


@dataclass(frozen=True)
class End:
    response: Response


Step = Clause | End


class ResponseBook:
    def __init__(
        self,
        chunker_factory: Callable[[], ClauseChunker] = ClauseChunker,
        max_responses: int = 16,
        max_pending_chars: int = 20_000,
        remember: int = 256,
    ) -> None:
        self._new_chunker = chunker_factory
        self.max_responses = max_responses
        self.max_pending_chars = max_pending_chars
        self._remember = remember
        self._open: OrderedDict[str, Response] = OrderedDict()
        self._closed: OrderedDict[str, bool] = OrderedDict()  # id -> was cancelled
        self.input_closed = False

    @property
    def done(self) -> bool:
        """No more work will ever come: input closed and every response finished."""
        return self.input_closed and not self._open

    def open_responses(self) -> list[Response]:
        return list(self._open.values())

    def add_text(self, response_id: str, text: str, now: float) -> None:
        if not response_id:
            raise ProtocolError("text.response_id is empty")
        response = self._open.get(response_id)
        if response is None:
            if self._closed.get(response_id) is True:
                return  # text racing a cancel: dropped on purpose
            if response_id in self._closed:
                raise ProtocolError(f"text for response {response_id!r} after its end")
            response = self._create(response_id, now)
        elif response.ended:
            raise ProtocolError(f"text for response {response_id!r} after its end")
        pending = sum(r.pending_chars for r in self._open.values()) + len(text)
        if pending > self.max_pending_chars:
            raise LimitExceeded(f"more than {self.max_pending_chars} characters of text waiting to be spoken")
        response.clauses.extend(response.chunker.push(text))

    def end_text(self, response_id: str, now: float) -> None:
        if not response_id:
            raise ProtocolError("end.response_id is empty")
        if response_id in self._closed:
            return  # cancelled already, or a repeated end
        response = self._open.get(response_id) or self._create(response_id, now)
        self._end(response)

    def cancel(self, response_id: str) -> list[Response]:
        """Cancel one response ("" = every open one); returns the responses cancelled now.

        An id not seen yet is remembered, so text arriving for it later is dropped."""
        if not response_id:
            victims = list(self._open.values())
        elif response_id in self._open:
            victims = [self._open[response_id]]
        else:
            if response_id not in self._closed:
                self._remember_closed(response_id, cancelled=True)
            return []
        for response in victims:
            response.cancelled = True
            response.clauses.clear()
            del self._open[response.response_id]
            self._remember_closed(response.response_id, cancelled=True)
        return victims

    def close_input(self) -> None:
        """The client sent its last request: every open response ends with the text it has."""
        self.input_closed = True
        for response in self._open.values():
            self._end(response)

    def next_step(self) -> Step | None:
        """Work for the oldest open response, or None while it waits for text."""
        if not self._open:
            return None
        response = next(iter(self._open.values()))
        if response.clauses:
            return Clause(response, response.clauses.popleft())
        if response.ended:
            return End(response)
        return None

    def finish(self, response: Response) -> None:
        """The response's end was sent."""
        if self._open.get(response.response_id) is response:
            response.finished = True
            del self._open[response.response_id]
            self._remember_closed(response.response_id, cancelled=False)

    def _create(self, response_id: str, now: float) -> Response:
        if len(self._open) >= self.max_responses:
            raise LimitExceeded(f"more than {self.max_responses} responses open at once")
        response = Response(response_id, self._new_chunker(), first_text_at=now)
        self._open[response_id] = response
        return response

    def _end(self, response: Response) -> None:
        if not response.ended:
            response.clauses.extend(response.chunker.flush())
            response.ended = True

    def _remember_closed(self, response_id: str, cancelled: bool) -> None:
        self._closed[response_id] = cancelled
        self._closed.move_to_end(response_id)
        while len(self._closed) > self._remember:
            self._closed.popitem(last=False)
