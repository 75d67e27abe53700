"""A scripted OpenAI-compatible chat server on 127.0.0.1, port 0: real HTTP and real SSE,
with a fixed "model" the test writes.

It stands in for the LLM only where the real one cannot be made to behave the same way
twice: llama.cpp's server with a 135M model does not choose tools on its own (and cannot
stream an `auto` tool choice), and fails on command never. Plumbing the real server can
prove is proved against it (services/reasoning/tests/test_llm_backend_llama.py).

    async with ScriptedLlm(model) as llm:          # model(body) -> list of Steps
        base_url = llm.base_url("main")            # several endpoints on one server
        ...
        llm.bodies                                 # every request body, as JSON
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from voicemesh.mesh.localservers import free_port


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]
    id: str = "call_1"


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error instead of a stream."""

    status: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Hang:
    """Stop sending (until the client goes away)."""


Step = Text | Call | Pause | Status | Hang
Model = Callable[[dict[str, Any], str], Sequence[Step]]  # (body, endpoint name) -> steps


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"object": "chat.completion.chunk", "choices": [choice]}).encode() + b"\n\n"


@dataclass
class ScriptedLlm:
    model: Model
    port: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # a client left mid-stream
    _runner: web.AppRunner | None = None

    def base_url(self, endpoint: str = "main") -> str:
        return f"http://127.0.0.1:{self.port}/{endpoint}/v1"

    def last_messages(self) -> list[dict[str, Any]]:
        return list(self.bodies[-1]["messages"])

    async def __aenter__(self) -> ScriptedLlm:
        self.port = self.port or free_port()
        app = web.Application()
        app.router.add_post("/{endpoint}/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        endpoint = request.match_info["endpoint"]
        self.raw.append(raw)
        self.bodies.append(body)
        self.endpoints.append(endpoint)
        steps = list(self.model(body, endpoint))
        if steps and isinstance(steps[0], Status):
            headers = {"Retry-After": steps[0].retry_after} if steps[0].retry_after else {}
            error = {"error": {"message": "scripted failure", "type": "server_error"}}
            return web.json_response(error, status=steps[0].status, headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk({"role": "assistant", "content": ""}))
            calls = 0
            for step in steps:
                if isinstance(step, Text):
                    await response.write(_chunk({"content": step.text}))
                elif isinstance(step, Call):
                    call = {
                        "index": calls,
                        "id": step.id,
                        "type": "function",
                        "function": {"name": step.name, "arguments": json.dumps(step.arguments)},
                    }
                    calls += 1
                    await response.write(_chunk({"tool_calls": [call]}))
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Hang):
                    await asyncio.sleep(3600)
            await response.write(_chunk({}, "tool_calls" if calls else "stop"))
            await response.write(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            self.gone.set()
            raise
        return response


def last_user(body: dict[str, Any]) -> str:
    users = [m["content"] for m in body["messages"] if m["role"] == "user"]
    return users[-1] if users else ""


def tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]
