"""An agent's HTTP tools: built once per agent at load, called by name with the model's
arguments. A thin async shell around `tool_codec` (the pure checks and encodings).

    toolbox = ToolBox.from_agent(agent, os.environ)     # ValueError on a bad tool
    request["tools"] = [*toolbox.openai_tools(), *builtin_tools()]
    ...
    result = await toolbox.call(name, arguments_json, session=http)
    messages.append({"role": "tool", "tool_call_id": call_id, "content": result.result_json})

`call` never raises for a problem on the tool's side (unknown tool, bad arguments, connect
failure, timeout, HTTP error status, oversized answer): the result has ok=False and a
`result_json` of `{"error": ...}` to give back to the model. Cancelling the call (a
barge-in) cancels the request and propagates `CancelledError`.

Log text holds the tool name, status, duration and failure kind only: never the secret,
the arguments or the answer (they may hold a caller's name or number).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from jsonschema.protocols import Validator

from voicemesh.agent import Agent, Tool

from .backend import ToolCall
from .builtin_actions import BUILTIN_NAMES
from .tool_codec import (
    Answer,
    ArgumentsError,
    ToolFailure,
    answer,
    arguments_validator,
    check_parameters,
    encode_body,
    failed,
    parse_arguments,
    query_params,
    too_large,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024
_MAX_NAME_CHARS = 64

Clock = Callable[[], float]


@dataclass(frozen=True)
class ToolResult:
    """One tool call. `result_json` is what the model is shown (a JSON text); `error` is a
    short text (empty when ok) that may quote the arguments: not for log text. `status`
    is the HTTP status, None when no answer came."""

    name: str
    arguments_json: str
    result_json: str
    ok: bool
    error: str
    duration_ms: int
    status: int | None = None
    failure: ToolFailure | None = None

    def event(self, mask: Callable[[str], str] = lambda text: text) -> ToolCall:
        """The backend's `ToolCall` item reporting this call, its texts through `mask`
        (what leaves the process as a message or event: `Redactor.mask`)."""
        return ToolCall(self.name, mask(self.arguments_json), mask(self.result_json), self.duration_ms)


@dataclass(frozen=True)
class _Prepared:
    tool: Tool
    parameters: dict[str, Any]
    validator: Validator = field(repr=False)
    # (header, value) with the secret in it: kept out of repr.
    auth: tuple[str, str] | None = field(default=None, repr=False)


def _auth_header(tool: Tool, env: Mapping[str, str]) -> tuple[str, str] | None:
    if tool.auth is None:
        return None
    secret = env.get(tool.auth.env, "")
    if not secret:
        raise ValueError(
            f"tool {tool.name!r} needs the environment variable {tool.auth.env} (its auth secret), "
            "which is not set or empty"
        )
    if any(c in secret for c in "\r\n\0"):
        raise ValueError(
            f"tool {tool.name!r}: the environment variable {tool.auth.env} holds a line break "
            "or NUL, which a header cannot carry"
        )
    scheme = tool.auth.scheme.strip()
    return tool.auth.header, f"{scheme} {secret}" if scheme else secret


def _prepare(tool: Tool, env: Mapping[str, str]) -> _Prepared:
    if tool.name in BUILTIN_NAMES:
        raise ValueError(
            f"tool {tool.name!r} has the name of a built-in action "
            f"({', '.join(sorted(BUILTIN_NAMES))}): rename the tool"
        )
    parameters = check_parameters(tool.name, tool.parameters)
    return _Prepared(tool, parameters, arguments_validator(parameters), _auth_header(tool, env))


def _shown(name: str) -> str:
    """A tool name the model wrote, cut short for an error or a log field."""
    return name if len(name) <= _MAX_NAME_CHARS else name[:_MAX_NAME_CHARS] + "…"


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes (after decompression)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class ToolBox:
    """The HTTP tools of one agent, checked. Build it with `from_agent`."""

    def __init__(
        self,
        tools: Mapping[str, _Prepared],
        *,
        clock: Clock = time.monotonic,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        self._tools = dict(tools)
        self._clock = clock
        self._max_body_bytes = max_body_bytes

    @classmethod
    def from_agent(
        cls,
        agent: Agent,
        env: Mapping[str, str],
        *,
        clock: Clock = time.monotonic,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> ToolBox:
        """Check every tool of `agent`: its parameters schema against the JSON Schema
        meta-schema, its name against the built-in actions and the other tools, and that
        its auth secret is in `env`. Raises ValueError naming the tool (or the variable)."""
        tools: dict[str, _Prepared] = {}
        for tool in agent.tools:
            if tool.name in tools:
                raise ValueError(f"tool {tool.name!r} is declared twice")
            tools[tool.name] = _prepare(tool, env)
        return cls(tools, clock=clock, max_body_bytes=max_body_bytes)

    def names(self) -> list[str]:
        return list(self._tools)

    def tool(self, name: str) -> Tool | None:
        """The tool's declaration (for its `filler` and `filler_after_ms`), or None."""
        prepared = self._tools.get(name)
        return prepared.tool if prepared is not None else None

    def openai_tools(self) -> list[dict[str, Any]]:
        """The OpenAI chat `tools` entries for the agent's tools (fresh copies)."""
        return [
            {
                "type": "function",
                "function": {
                    "name": p.tool.name,
                    "description": p.tool.description,
                    "parameters": copy.deepcopy(p.parameters),
                },
            }
            for p in self._tools.values()
        ]

    async def call(
        self,
        name: str,
        arguments_json: str,
        *,
        session: aiohttp.ClientSession,
        timeout_s: float | None = None,
    ) -> ToolResult:
        """Call the tool `name` with the model's arguments. The call waits at most the
        tool's `timeout_ms`, or `timeout_s` if that is shorter (what is left of a turn)."""
        start = self._clock()
        prepared = self._tools.get(name)
        if prepared is None:
            unknown = failed(ToolFailure.UNKNOWN_TOOL, f"there is no tool named {_shown(name)!r}")
            return self._finish(name, arguments_json, start, None, unknown)
        try:
            arguments = parse_arguments(arguments_json, prepared.validator)
        except ArgumentsError as e:
            return self._finish(name, arguments_json, start, None, failed(ToolFailure.BAD_ARGUMENTS, str(e)))

        limit_s = prepared.tool.timeout_ms / 1000
        if timeout_s is not None:
            limit_s = max(0.0, min(limit_s, timeout_s))
        status: int | None = None
        try:
            async with asyncio.timeout(limit_s):
                status, outcome = await self._request(prepared, arguments, session)
        except TimeoutError:
            outcome = failed(
                ToolFailure.TIMEOUT, f"the tool did not answer within {round(limit_s * 1000)} ms"
            )
        except aiohttp.ClientConnectorError:
            outcome = failed(ToolFailure.CONNECT, "could not connect to the tool")
        except aiohttp.ClientError as e:
            outcome = failed(ToolFailure.TRANSPORT, f"the request to the tool failed ({type(e).__name__})")
        except asyncio.CancelledError:
            log.info("tool call cancelled", extra={"tool": name, "duration_ms": self._since(start)})
            raise
        return self._finish(name, arguments_json, start, status, outcome)

    async def _request(
        self, prepared: _Prepared, arguments: dict[str, Any], session: aiohttp.ClientSession
    ) -> tuple[int, Answer]:
        tool = prepared.tool
        headers = {"Accept": "application/json"}
        if prepared.auth is not None:
            headers[prepared.auth[0]] = prepared.auth[1]
        options: dict[str, Any] = {}
        if tool.method == "GET":
            options["params"] = query_params(arguments)
        else:
            headers["Content-Type"] = "application/json"
            options["data"] = encode_body(arguments)
        # No redirects: a redirect to another host would carry the auth header there.
        async with session.request(
            tool.method, tool.url, headers=headers, allow_redirects=False, **options
        ) as response:
            body = await _read_capped(response, self._max_body_bytes)
            if body is None:
                return response.status, too_large(self._max_body_bytes, response.status)
            return response.status, answer(response.status, body, response.charset)

    def _since(self, start: float) -> int:
        return max(0, round((self._clock() - start) * 1000))

    def _finish(
        self, name: str, arguments_json: str, start: float, status: int | None, outcome: Answer
    ) -> ToolResult:
        duration_ms = self._since(start)
        fields = {
            "tool": _shown(name),
            "status": status,
            "duration_ms": duration_ms,
            "failure": outcome.failure.value if outcome.failure else None,
        }
        if outcome.ok:
            log.info("tool called", extra=fields)
        else:
            log.warning("tool call failed", extra=fields)
        return ToolResult(
            name=name,
            arguments_json=arguments_json,
            result_json=outcome.result_json,
            ok=outcome.ok,
            error=outcome.error,
            duration_ms=duration_ms,
            status=status,
            failure=outcome.failure,
        )


async def call_with_filler(
    toolbox: ToolBox,
    name: str,
    arguments_json: str,
    *,
    session: aiohttp.ClientSession,
    timeout_s: float | None = None,
) -> AsyncIterator[str | ToolResult]:
    """Call a tool as a caller waits on it: yields the tool's `filler` text if the tool has
    not answered within its `filler_after_ms`, then the `ToolResult`. Closing the iterator
    (a barge-in) cancels the request."""
    task = asyncio.create_task(toolbox.call(name, arguments_json, session=session, timeout_s=timeout_s))
    try:
        declared = toolbox.tool(name)
        if declared is not None and declared.filler:
            done, _ = await asyncio.wait({task}, timeout=declared.filler_after_ms / 1000)
            if not done:
                yield declared.filler.strip()
        result = await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    yield result
