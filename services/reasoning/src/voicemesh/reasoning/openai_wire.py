"""The OpenAI chat-completions wire, streaming: the request body and the decoding of the
server-sent events that answer it. Pure: bytes and dicts in, typed values out; no I/O.

    body = request_body(ChatRequest(model, messages, tools=..., tool_choice=...))
    decoder = ChatStreamDecoder()
    for piece in bytes_from_the_socket:
        for event in decoder.feed(piece):     # TextDelta, ToolCallDone, Finished
            ...
    events = decoder.end_of_stream()          # the connection closed

Messages and tools may be typed (`ChatMessage`, `ToolSpec`) or the plain OpenAI dicts that
`ToolBox.openai_tools()` and `builtin_tools()` return; both are checked alike.

Tool calls arrive as fragments keyed by `index` (the name once, or repeated in every
fragment as llama.cpp's server does, and `arguments` in pieces); they are joined and emitted
as `ToolCallDone` when `finish_reason` arrives or the stream ends. `Finished` comes last,
after `[DONE]` (so a usage-only chunk that follows the finish reason is included).

Malformed input raises `WireError` naming what was wrong, never echoing the content.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, Literal

MAX_LINE_BYTES = 1 << 20  # one SSE line; a chunk of one token is a few hundred bytes
MAX_TOOL_ARGUMENTS_CHARS = 1 << 20
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ERROR_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Error codes a server reports inside a stream that say "try again", not "you were wrong".
_TRANSIENT_CODES = frozenset(
    {
        "server_error",
        "internal_error",
        "overloaded",
        "overloaded_error",
        "rate_limit_exceeded",
        "rate_limit_error",
        "timeout",
        "service_unavailable",
        "api_error",
    }
)


class WireError(ValueError):
    """The server's bytes are not a chat-completions stream; `transient` when the server
    itself reported a passing failure (overload, rate limit) inside the stream."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# --- the request -----------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is its JSON schema. `strict` (OpenAI's
    structured outputs) is sent only when set."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None

    @classmethod
    def from_openai(cls, entry: Mapping[str, Any]) -> ToolSpec:
        """One entry of OpenAI's `tools` array (`{"type": "function", "function": {...}}`,
        as `ToolBox.openai_tools()` and `builtin_tools()` make them); ValueError naming
        the field that is wrong."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"a tool is a JSON {_kind(entry)}, not an object")
        if entry.get("type") != "function":
            raise ValueError("a tool's type is not 'function'")
        function = entry.get("function")
        if not isinstance(function, Mapping):
            raise ValueError("a tool has no 'function' object")
        name = function.get("name")
        if not isinstance(name, str):
            raise ValueError("a tool's function.name is not a string")
        description = function.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"tool {name!r}: function.description is not a string")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, Mapping):
            raise ValueError(f"tool {name!r}: function.parameters is not an object")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise ValueError(f"tool {name!r}: function.strict is not a boolean")
        return cls(name, description, parameters, strict)

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolCallDone:
    """A complete tool call the model made (also how an assistant message records one)."""

    id: str
    name: str
    arguments_json: str


Role = Literal["system", "user", "assistant", "tool"]
_ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str | None
    # assistant: the calls it made; tool: the call this message answers.
    tool_calls: tuple[ToolCallDone, ...] = ()
    tool_call_id: str = ""

    @classmethod
    def from_openai(cls, message: Mapping[str, Any]) -> ChatMessage:
        """A message as OpenAI writes it (`{"role": "tool", "tool_call_id": ..., "content":
        ...}`); ValueError naming the field that is wrong, never its content."""
        if not isinstance(message, Mapping):
            raise ValueError(f"a message is a JSON {_kind(message)}, not an object")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise ValueError("a message's role is not system, user, assistant or tool")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"{_a(role)} message's content is not a string")
        call_id = message.get("tool_call_id") or ""
        if not isinstance(call_id, str):
            raise ValueError("a tool message's tool_call_id is not a string")
        calls = message.get("tool_calls") or ()
        if not isinstance(calls, Sequence) or isinstance(calls, str):
            raise ValueError(f"{_a(role)} message's tool_calls is not an array")
        return cls(role, content, tuple(_recorded_call(c) for c in calls), call_id)  # type: ignore[arg-type]


def _a(role: str) -> str:
    return ("an " if role == "assistant" else "a ") + role  # the roles are known words


def _recorded_call(call: object) -> ToolCallDone:
    """One entry of an assistant message's `tool_calls`."""
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(call, Mapping) or not isinstance(function, Mapping):
        raise ValueError("an assistant message's tool call has no 'function' object")
    call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise ValueError("an assistant message's tool call needs string id, name and arguments")
    return ToolCallDone(call_id, name, arguments)


@dataclass(frozen=True)
class ForceTool:
    """`tool_choice` naming one function: the model must call it."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | ForceTool


@dataclass(frozen=True)
class ChatRequest:
    """One completion to ask for. `messages` and `tools` may be typed values or the plain
    OpenAI dicts the rest of the service builds (`ToolBox.openai_tools()`, tool results);
    both are checked the same way."""

    model: str
    messages: Sequence[ChatMessage | Mapping[str, Any]]
    temperature: float = 0.3
    max_tokens: int = 200
    tools: Sequence[ToolSpec | Mapping[str, Any]] = ()
    tool_choice: ToolChoice | None = None
    # Ask for a final usage chunk (`stream_options.include_usage`); not every server knows it.
    include_usage: bool = False


def request_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of `POST {base_url}/chat/completions`; ValueError on a request no
    server would accept (checked here so the mistake names itself)."""
    if not request.model:
        raise ValueError("model is empty")
    if not request.messages:
        raise ValueError("no messages")
    if not (0.0 <= request.temperature <= 2.0) or math.isnan(request.temperature):
        raise ValueError(f"temperature {request.temperature} is outside 0..2")
    if request.max_tokens < 1:
        raise ValueError(f"max_tokens {request.max_tokens} is below 1")
    tools = [t if isinstance(t, ToolSpec) else ToolSpec.from_openai(t) for t in request.tools]
    messages = [m if isinstance(m, ChatMessage) else ChatMessage.from_openai(m) for m in request.messages]
    names = [tool.name for tool in tools]
    for name in names:
        if not _TOOL_NAME.match(name):
            raise ValueError(f"tool name {name!r} is not 1-64 letters, digits, '_' or '-'")
    if len(set(names)) != len(names):
        raise ValueError("two tools share a name")
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m) for m in messages],
        "stream": True,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.include_usage:
        body["stream_options"] = {"include_usage": True}
    if tools:
        body["tools"] = [tool.to_openai() for tool in tools]
    choice = request.tool_choice
    if isinstance(choice, ForceTool):
        if choice.name not in names:
            raise ValueError(f"tool_choice names {choice.name!r}, which is not among the tools")
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        if choice not in ("auto", "none", "required"):
            raise ValueError(f"tool_choice {choice!r} is not auto, none, required or ForceTool")
        if choice != "none" and not tools:
            raise ValueError(f"tool_choice {choice!r} without tools")
        body["tool_choice"] = choice
    return body


def encode_request(request: ChatRequest) -> bytes:
    return json.dumps(request_body(request), ensure_ascii=False, separators=(",", ":")).encode()


def _message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "tool":
        if not message.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        out["tool_call_id"] = message.tool_call_id
    if message.content is None and (message.role != "assistant" or not message.tool_calls):
        raise ValueError(
            f"{_a(message.role)} message needs content"
            + (" or tool calls" if message.role == "assistant" else "")
        )
    if message.tool_calls:
        if message.role != "assistant":
            raise ValueError(f"{_a(message.role)} message cannot carry tool calls")
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in message.tool_calls
        ]
    return out


# --- server-sent events ----------------------------------------------------------------


class SseDecoder:
    """Bytes of an event stream in, the `data` of each complete event out.

    Lines may end in LF, CRLF or CR (also split across chunks); `:` lines are comments (keep-
    alive pings); several `data:` lines of one event join with a newline; other fields
    (`event`, `id`, `retry`) are read past. `[DONE]` ends the stream: `done` turns true and
    anything after it is ignored. An event not closed by a blank line when the stream ends
    is dropped, as the SSE rules say.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_line = max_line_bytes
        self._buffer = bytearray()
        self._after_cr = False  # the last byte seen was a CR: a following LF is its pair
        self._data: list[str] = []
        self._first_line = True
        self.done = False

    def feed(self, chunk: bytes) -> list[str]:
        out: list[str] = []
        if self.done or not chunk:
            return out
        start = 0
        if self._after_cr and chunk[:1] == b"\n":
            start = 1
        self._after_cr = False
        pos = start
        n = len(chunk)
        # The next LF and CR at or after pos (-1: none in the rest of the chunk), each
        # searched for again only once passed, so a chunk is scanned once.
        lf = chunk.find(b"\n", pos)
        cr = chunk.find(b"\r", pos)
        while pos < n:
            if 0 <= lf < pos:
                lf = chunk.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = chunk.find(b"\r", pos)
            if lf < 0 and cr < 0:
                self._buffer += chunk[pos:]
                break
            end = lf if cr < 0 else cr if lf < 0 else min(lf, cr)
            self._buffer += chunk[pos:end]
            line = bytes(self._buffer)
            self._buffer.clear()
            if chunk[end] == 13:  # CR: swallow an LF right after it, here or in the next chunk
                if end + 1 < n:
                    pos = end + 2 if chunk[end + 1] == 10 else end + 1
                else:
                    self._after_cr = True
                    pos = n
            else:
                pos = end + 1
            data = self._line(line)
            if data is not None:
                out.append(data)
            if self.done:
                return out
        if len(self._buffer) > self._max_line:
            raise WireError(f"event-stream line longer than {self._max_line} bytes")
        return out

    def _line(self, raw: bytes) -> str | None:
        if len(raw) > self._max_line:
            raise WireError(f"event-stream line longer than {self._max_line} bytes")
        if self._first_line:
            self._first_line = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if not raw:  # a blank line dispatches the event
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data.clear()
            if data == "[DONE]":
                self.done = True
                return None
            return data
        if raw.startswith(b":"):
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("event-stream line is not UTF-8") from None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None


# --- chunks -> events ------------------------------------------------------------------


class FinishReason(Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    OTHER = "other"  # a reason this code does not know (kept in Finished.raw_reason)
    UNSPECIFIED = "unspecified"  # the stream ended properly without giving one


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    usage: Usage | None = None
    raw_reason: str = ""


ChatEvent = TextDelta | ToolCallDone | Finished


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    size: int = 0


class ChunkAccumulator:
    """The JSON `data` of each chunk in, events out. `started` turns true at the first piece
    of the answer (text or a tool-call fragment): the moment a first-token deadline ends."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._reason: FinishReason | None = None
        self._raw_reason = ""
        self._usage: Usage | None = None
        self._chunks = 0
        self.started = False
        self.finished = False

    def feed(self, data: str) -> list[ChatEvent]:
        if self.finished:
            raise WireError("chunk after the end of the stream")
        self._chunks += 1
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise WireError("chunk is not valid JSON") from None
        if not isinstance(chunk, dict):
            raise WireError(f"chunk is a JSON {_kind(chunk)}, not an object")
        if chunk.get("error") is not None:
            raise _stream_error(chunk["error"])
        usage = chunk.get("usage")
        if usage is not None:
            self._usage = _usage(usage)
        choices = chunk.get("choices")
        if choices is None:
            if usage is None:
                raise WireError("chunk has neither choices nor usage")
            return []
        if not isinstance(choices, list):
            raise WireError(f"chunk.choices is a JSON {_kind(choices)}, not an array")
        out: list[ChatEvent] = []
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                raise WireError(f"chunk.choices[{position}] is not an object")
            if choice.get("index", 0) != 0:
                continue  # n > 1 is never asked for; other choices are not ours
            out.extend(self._choice(choice))
        return out

    def finish(self, *, done_seen: bool) -> list[ChatEvent]:
        """The stream ended: with `[DONE]` (`done_seen`) or by the connection closing. The
        pending tool calls, then `Finished`. A stream cut before any finish reason and
        without `[DONE]` is truncated: a transient WireError."""
        if self.finished:
            return []
        if self._reason is None and not done_seen:
            # Cut short: a server or network failure more often than a server's rule.
            what = "before the response finished" if self._chunks else "without any event"
            raise WireError(f"stream ended {what}", transient=True)
        out: list[ChatEvent] = list(self._flush_calls())
        self.finished = True
        reason = self._reason or FinishReason.UNSPECIFIED
        out.append(Finished(reason, self._usage, self._raw_reason))
        return out

    def _choice(self, choice: dict[str, Any]) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        delta = choice.get("delta")
        if delta is not None:
            if not isinstance(delta, dict):
                raise WireError("choices[0].delta is not an object")
            content = delta.get("content")
            if content is not None:
                if not isinstance(content, str):
                    raise WireError("choices[0].delta.content is not a string")
                if content:
                    self._check_open("content")
                    self.started = True
                    out.append(TextDelta(content))
            calls = delta.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list):
                    raise WireError("choices[0].delta.tool_calls is not an array")
                if calls:
                    self._check_open("tool call")
                for position, call in enumerate(calls):
                    self._fragment(position, call)
        reason = choice.get("finish_reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise WireError("choices[0].finish_reason is not a string")
            if self._reason is None:
                self._raw_reason = reason
                try:
                    self._reason = FinishReason(reason)
                except ValueError:
                    self._reason = FinishReason.OTHER
                out.extend(self._flush_calls())
        return out

    def _check_open(self, what: str) -> None:
        if self._reason is not None:
            raise WireError(f"{what} delta after the finish reason")

    def _fragment(self, position: int, call: object) -> None:
        where = f"choices[0].delta.tool_calls[{position}]"
        if not isinstance(call, dict):
            raise WireError(f"{where} is not an object")
        index = call.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise WireError(f"{where}.index is not a non-negative integer")
        partial = self._calls.setdefault(index, _PartialCall())
        call_id = call.get("id")
        if call_id is not None:
            if not isinstance(call_id, str):
                raise WireError(f"{where}.id is not a string")
            if call_id and not partial.id:
                partial.id = call_id
        function = call.get("function")
        if function is None:
            return
        if not isinstance(function, dict):
            raise WireError(f"{where}.function is not an object")
        name = function.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise WireError(f"{where}.function.name is not a string")
            if name:
                if partial.name and name != partial.name:
                    raise WireError(f"tool call {index} changed its name mid-stream")
                partial.name = name
        arguments = function.get("arguments")
        if arguments is not None:
            if not isinstance(arguments, str):
                raise WireError(f"{where}.function.arguments is not a string")
            partial.size += len(arguments)
            if partial.size > MAX_TOOL_ARGUMENTS_CHARS:
                raise WireError(f"tool call {index} arguments exceed {MAX_TOOL_ARGUMENTS_CHARS} characters")
            partial.arguments.append(arguments)
        self.started = True

    def _flush_calls(self) -> list[ToolCallDone]:
        out: list[ToolCallDone] = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise WireError(f"tool call {index} has no function name")
            arguments = "".join(partial.arguments).strip() or "{}"
            out.append(ToolCallDone(partial.id or f"call_{index}", partial.name, arguments))
        self._calls.clear()
        return out


def _usage(value: object) -> Usage:
    if not isinstance(value, dict):
        raise WireError("chunk.usage is not an object")
    counts: list[int] = []
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        count = value.get(key, 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise WireError(f"usage.{key} is not a non-negative integer")
        counts.append(count)
    return Usage(*counts)


def _stream_error(error: object) -> WireError:
    """An error object the server sent inside the stream: its type/code only (its message
    may quote the request)."""
    words = error_words(error)
    transient = any(word in _TRANSIENT_CODES for word in words)
    named = "/".join(words) if words else "no code"
    return WireError(f"server reported an error in the stream ({named})", transient=transient)


def error_words(error: object) -> list[str]:
    """The `type` and `code` of an OpenAI error object (`{"error": {...}}` or its inside),
    when they are short identifiers; never its free-text message."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if not isinstance(error, dict):
        return []
    words: list[str] = []
    for key in ("type", "code"):
        value = error.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and _ERROR_WORD.match(value) and value not in words:
            words.append(value)
    return words


def error_summary(body: bytes) -> str:
    """`type/code` from an error response body, or "" when it has none (or is not JSON)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    return "/".join(error_words(parsed))


def retry_after_s(
    retry_after: str | None, retry_after_ms: str | None = None, *, now_epoch_s: float
) -> float | None:
    """Seconds to wait from the `Retry-After` header (delta-seconds or an HTTP date,
    measured from `now_epoch_s`) or OpenAI's `retry-after-ms`; None when absent or unreadable."""
    if retry_after_ms:
        try:
            ms = float(retry_after_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    if not retry_after:
        return None
    value = retry_after.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


# --- both together ---------------------------------------------------------------------


class ChatStreamDecoder:
    """Response body bytes in, chat events out: an `SseDecoder` feeding a `ChunkAccumulator`."""

    def __init__(self) -> None:
        self._sse = SseDecoder()
        self._chunks = ChunkAccumulator()

    @property
    def started(self) -> bool:
        return self._chunks.started

    @property
    def finished(self) -> bool:
        return self._chunks.finished

    def feed(self, data: bytes) -> list[ChatEvent]:
        if self._chunks.finished:
            return []
        out: list[ChatEvent] = []
        for payload in self._sse.feed(data):
            out.extend(self._chunks.feed(payload))
        if self._sse.done:
            out.extend(self._chunks.finish(done_seen=True))
        return out

    def end_of_stream(self) -> list[ChatEvent]:
        return self._chunks.finish(done_seen=self._sse.done)
