"""`ChatClient` against a real llama.cpp server (llama-cpp-python + SmolLM2-135M, started by
`LlamaServer` on a free port) and, for failures that server cannot be made to produce, a
small aiohttp fault server started inside the test."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from voicemesh.agent import LlmEndpoint
from voicemesh.mesh.localservers import free_port
from voicemesh.reasoning.builtin_actions import builtin_tools
from voicemesh.reasoning.openai_client import (
    ApiKeyError,
    ChatClient,
    ChatEndpoint,
    LlmError,
    TransientLlmError,
    endpoint_from_config,
)
from voicemesh.reasoning.openai_wire import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    ChatStreamDecoder,
    Finished,
    FinishReason,
    ForceTool,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    error_summary,
)

from .llm_server import REQUIRE_ENV, TEST_KEY, LlamaServer, require_llama

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openai"
KEY = TEST_KEY
SECRET = "Mrs Smith, 07700 900123"
BOOK = ToolSpec(
    "book_table",
    "Book a table at the restaurant.",
    {
        "type": "object",
        "properties": {
            "party_size": {"type": "integer", "minimum": 1, "maximum": 12},
            "time": {"type": "string", "enum": ["18:00", "19:00", "20:00", "21:00"]},
        },
        "required": ["party_size", "time"],
    },
)
SYSTEM = ChatMessage("system", "You are the booking assistant of Bella Vista, a restaurant.")
# Greedy decoding of this prompt runs to max_tokens (the reference run checks it still does).
LONG = ChatRequest(
    "smollm2",
    [ChatMessage("user", "Write a long story about a dragon who learns to cook.")],
    temperature=0,
    max_tokens=300,
)
SHORT = ChatRequest("smollm2", [SYSTEM, ChatMessage("user", "Say hello.")], temperature=0, max_tokens=12)


def request(text: str, **kw: object) -> ChatRequest:
    return ChatRequest("smollm2", [SYSTEM, ChatMessage("user", text)], **{"temperature": 0, **kw})  # type: ignore[arg-type]


@pytest.fixture
async def client(llama: LlamaServer) -> AsyncIterator[ChatClient]:
    async with ChatClient(ChatEndpoint(llama.base_url, KEY)) as chat:
        yield chat


@dataclass
class Timed:
    at: float
    event: ChatEvent


async def collect(chat: ChatClient, req: ChatRequest, **timeouts: float) -> list[Timed]:
    start = time.perf_counter()
    out: list[Timed] = []
    stream = chat.stream(
        req,
        first_token_timeout_s=timeouts.get("first", 30.0),
        total_timeout_s=timeouts.get("total", 120.0),
    )
    async with stream:
        async for event in stream:
            out.append(Timed(time.perf_counter() - start, event))
    return out


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- the real server --------------------------------------------------------------------


async def test_text_deltas_arrive_while_the_model_generates(client: ChatClient, llama: LlamaServer) -> None:
    mark = llama.log_mark()
    timed = await collect(client, request("Tell me about the restaurant in three sentences.", max_tokens=40))
    deltas = [t for t in timed if isinstance(t.event, TextDelta)]
    finished = timed[-1]
    assert isinstance(finished.event, Finished)
    assert len(deltas) >= 10
    assert "".join(t.event.text for t in deltas if isinstance(t.event, TextDelta)).strip()
    # Streamed, the deltas spread over the time the server spent decoding them (its own
    # figure, from its log); a response buffered to its end would hand them over at once.
    [generation] = llama.completed_generations(mark)
    assert generation.steps >= len(deltas) - 1
    assert finished.at - deltas[0].at > generation.decode_s / 2, (finished.at - deltas[0].at, generation)


async def test_a_forced_tool_call_is_streamed_and_parsed(client: ChatClient) -> None:
    req = request(
        "A table for four at 7 pm, please.", max_tokens=60, tools=[BOOK], tool_choice=ForceTool("book_table")
    )
    events = [t.event for t in await collect(client, req)]
    assert [type(e) for e in events] == [ToolCallDone, Finished]
    call = events[0]
    assert isinstance(call, ToolCallDone) and call.name == "book_table" and call.id
    arguments = json.loads(call.arguments_json)
    assert set(arguments) == {"party_size", "time"}
    assert (
        1 <= arguments["party_size"] <= 12
        and arguments["time"] in BOOK.parameters["properties"]["time"]["enum"]
    )
    assert events[1] == Finished(FinishReason.TOOL_CALLS, None, "tool_calls")


async def test_the_builtin_tools_as_plain_dicts_reach_the_model(client: ChatClient) -> None:
    """`builtin_tools()` dicts go out as they are; the server turns their schemas into a
    grammar, so the forced call's arguments fit them."""
    req = request(
        "Please put me through to the manager at +44 20 7946 0958.",
        max_tokens=60,
        tools=builtin_tools(),
        tool_choice=ForceTool("transfer"),
    )
    events = [t.event for t in await collect(client, req)]
    assert [type(e) for e in events] == [ToolCallDone, Finished]
    call = events[0]
    assert isinstance(call, ToolCallDone) and call.name == "transfer"
    arguments = json.loads(call.arguments_json)
    assert set(arguments) == {"target"} and isinstance(arguments["target"], str), call.arguments_json


@pytest.fixture(scope="module")
def long_steps(llama: LlamaServer) -> int:
    """The decode steps LONG takes read to its end (greedy decoding: the same each run), as
    the server counts them: what a generation left running after a close would add."""

    async def run() -> int:
        mark = llama.log_mark()
        async with ChatClient(ChatEndpoint(llama.base_url, KEY)) as chat:
            timed = await collect(chat, LONG)
        assert timed[-1].event == Finished(FinishReason.LENGTH, None, "length"), "LONG no longer runs long"
        [generation] = llama.completed_generations(mark)
        assert generation.steps >= LONG.max_tokens - 1
        return generation.steps

    return asyncio.run(run())


async def assert_only_short_finished(
    llama: LlamaServer, chat: ChatClient, mark: int, long_steps: int
) -> None:
    """Read SHORT to its end, then check from the server's own log that LONG, closed after
    its first delta, never finished. The server runs one generation at a time
    (interrupt_requests off): had LONG kept generating, SHORT would have waited for it and
    LONG's `long_steps` would be logged before SHORT's end. No wall-clock threshold."""
    timed = await collect(chat, SHORT)
    assert isinstance(timed[-1].event, Finished)
    steps = [g.steps for g in llama.completed_generations(mark)]
    assert len(steps) == 1 and steps[0] <= SHORT.max_tokens, (steps, long_steps)
    # The server noticed the client leave (it logs each stream a client walked away from).
    await wait_for(lambda: "Disconnected from client" in llama.log_since(mark))


async def test_aclose_after_the_first_delta_stops_the_generation(
    llama: LlamaServer, client: ChatClient, long_steps: int
) -> None:
    mark = llama.log_mark()
    stream = client.stream(LONG, first_token_timeout_s=30, total_timeout_s=120)
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    await assert_only_short_finished(llama, client, mark, long_steps)


async def test_cancelling_the_reading_task_stops_the_generation(
    llama: LlamaServer, client: ChatClient, long_steps: int
) -> None:
    """Barge-in cancels the task waiting on `anext`: the connection must close with it."""
    mark = llama.log_mark()
    first = asyncio.Event()

    async def read() -> None:
        async for event in client.stream(LONG, first_token_timeout_s=30, total_timeout_s=120):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_only_short_finished(llama, client, mark, long_steps)


async def test_no_first_token_while_the_server_is_busy_is_transient(
    client: ChatClient, llama: LlamaServer
) -> None:
    """The real server makes a first-token timeout itself: busy with one generation, it
    holds the next request's first token back."""
    busy = client.stream(LONG, first_token_timeout_s=30, total_timeout_s=120)
    async with busy:
        await anext(busy)  # LONG is generating now
        with pytest.raises(
            TransientLlmError, match=r"127\.0\.0\.1:\d+: no first token within 0\.5 s"
        ) as caught:
            await collect(client, SHORT, first=0.5)
    assert caught.value.transient


async def test_connect_refused_is_transient() -> None:
    port = free_port()
    async with ChatClient(ChatEndpoint(f"http://127.0.0.1:{port}/v1", KEY)) as chat:
        with pytest.raises(TransientLlmError, match=rf"127\.0\.0\.1:{port}: cannot connect") as caught:
            await collect(chat, SHORT)
    assert caught.value.status is None and KEY not in str(caught.value)


@pytest.mark.parametrize("key", [None, "wrong-key-5d1"])
async def test_a_missing_or_wrong_key_is_401_and_not_transient(llama: LlamaServer, key: str | None) -> None:
    async with ChatClient(ChatEndpoint(llama.base_url, key)) as chat:
        with pytest.raises(LlmError) as caught:
            await collect(chat, SHORT)
    error = caught.value
    assert not isinstance(error, TransientLlmError) and not error.transient
    assert error.status == 401
    assert str(error) == f"127.0.0.1:{llama.port}: HTTP 401"
    assert "Say hello" not in str(error)


async def test_a_wrong_path_is_404(llama: LlamaServer) -> None:
    async with ChatClient(ChatEndpoint(llama.base_url.replace("/v1", "/v2"), KEY)) as chat:
        with pytest.raises(LlmError, match=r"HTTP 404") as caught:
            await collect(chat, SHORT)
    assert caught.value.status == 404 and not caught.value.transient


async def test_the_key_comes_from_the_configured_variable_or_file(llama: LlamaServer, tmp_path: Path) -> None:
    by_env = LlmEndpoint(base_url=llama.base_url, model="smollm2", api_key_env="VM_TEST_LLM_KEY")
    (tmp_path / "key").write_text(KEY + "\n")
    by_file = LlmEndpoint(base_url=llama.base_url, model="smollm2", api_key_file="key")
    for endpoint in (
        endpoint_from_config(by_env, {"VM_TEST_LLM_KEY": KEY}),
        endpoint_from_config(by_file, {}, base_dir=tmp_path),
    ):
        assert KEY not in repr(endpoint)
        async with ChatClient(endpoint) as chat:
            events = [t.event for t in await collect(chat, SHORT)]
        assert isinstance(events[-1], Finished)
    with pytest.raises(ApiKeyError, match=r"environment variable VM_TEST_LLM_KEY \(the API key\) is not set"):
        endpoint_from_config(by_env, {})
    with pytest.raises(ApiKeyError, match=r"API key file .*missing cannot be read"):
        endpoint_from_config(by_file.model_copy(update={"api_key_file": "missing"}), {}, base_dir=tmp_path)


async def test_fixtures_match_the_live_server(llama: LlamaServer) -> None:
    """The captured streams in fixtures/openai are what this server says today (greedy
    decoding is deterministic); VOICEMESH_RECORD_FIXTURES=1 records them anew."""
    record = bool(os.environ.get("VOICEMESH_RECORD_FIXTURES"))
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(force_close=True)  # the server drops a connection after an empty reply
    async with aiohttp.ClientSession(connector=connector) as session:
        for request_file in sorted(FIXTURES.glob("*.request.json")):
            body = json.loads(request_file.read_text())
            async with session.post(
                f"{llama.base_url}/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200
                live = await response.read()
            captured = request_file.with_name(request_file.name.replace(".request.json", ".sse"))
            if record:
                captured.write_bytes(live)
            assert summary(live) == summary(captured.read_bytes()), request_file.name
        text_stop = json.loads((FIXTURES / "text_stop.request.json").read_text())
        # A body that fails the server's validation; its error message quotes the request.
        invalid = {"model": "smollm2", "messages": [{"role": "user", "content": 5, "x": SECRET}]}
        for name, status, path, auth, body in (
            ("error_401.json", 401, "/v1", {}, text_stop),
            ("error_404.json", 404, "/v2", headers, text_stop),
            ("error_500_invalid_body.json", 500, "/v1", headers, invalid),
        ):
            url = llama.base_url.replace("/v1", path) + "/chat/completions"
            async with session.post(url, json=body, headers=auth) as response:
                assert response.status == status, name
                live = await response.read()
            if record:
                (FIXTURES / name).write_bytes(live)
            captured = (FIXTURES / name).read_bytes()
            assert error_summary(live) == error_summary(captured), name
            if status == 500:  # the message names local paths: compare what matters
                assert SECRET.encode() in live and SECRET.encode() in captured
            else:
                assert live == captured, name


def summary(raw: bytes) -> list[object]:
    """The decoded events without the per-request ids the server makes up."""
    decoder = ChatStreamDecoder()
    try:
        events = [*decoder.feed(raw), *decoder.end_of_stream()]
    except ValueError as exc:
        return [str(exc)]
    return [(e.name, e.arguments_json) if isinstance(e, ToolCallDone) else e for e in events]


def test_the_server_is_skipped_only_when_absent_and_not_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no LLM server in .*run scripts/llm_server\.sh"):
        require_llama(tmp_path / "absent")
    (tmp_path / "half").mkdir()  # a cut install: never a skip
    with pytest.raises(pytest.fail.Exception, match="is incomplete"):
        require_llama(tmp_path / "half")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="VOICEMESH_REQUIRE_LLM is set, so this is a failure"):
        require_llama(tmp_path / "absent")


def test_endpoint_url_host_and_repr() -> None:
    endpoint = ChatEndpoint("http://llm.internal:8000/v1/", KEY)
    assert endpoint.url == "http://llm.internal:8000/v1/chat/completions"
    assert endpoint.host == "llm.internal:8000"
    assert ChatEndpoint("https://api.example.com/v1").host == "api.example.com"
    assert KEY not in repr(endpoint) and KEY not in str(endpoint)
    with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL with a host"):
        ChatEndpoint("localhost:8000/v1")


# --- the fault server: failures llama.cpp cannot be made to produce -----------------------


@dataclass
class FaultServer:
    """Each path `/{mode}/v1/chat/completions` answers one way. The handler is cancelled when
    the client goes away (`handler_cancellation`), which `gone` records per mode."""

    port: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    gone: dict[str, asyncio.Event] = field(default_factory=dict)

    def base_url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.headers.append(dict(request.headers))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(tuple(peer) if peer else ("", 0))  # type: ignore[arg-type]
        await request.read()
        gone = self.gone.setdefault(mode, asyncio.Event())
        try:
            return await MODES[mode](request)
        except asyncio.CancelledError:
            gone.set()
            raise


async def _stream(
    request: web.Request, *pieces: bytes, then: Awaitable[None] | None = None
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    for piece in pieces:
        await response.write(piece)
    if then is not None:
        await then
    return response


def _chunk(**delta: object) -> bytes:
    return (
        b"data: "
        + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}).encode()
        + b"\n\n"
    )


def _error(status: int, headers: dict[str, str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = {
            "error": {"message": f"overloaded while answering {SECRET}", "type": "server_error", "code": None}
        }
        return web.json_response(body, status=status, headers=headers)

    return handler


async def _reset(request: web.Request) -> web.StreamResponse:
    response = await _stream(request, _chunk(content="Hel"))
    assert request.transport is not None
    request.transport.abort()  # an RST mid-stream: a crashed server or a dropped proxy
    return response


MODES: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    "ok": lambda r: _stream(r, (FIXTURES / "text_stop.sse").read_bytes()),
    "busy": _error(503, {"Retry-After": "7"}),
    "ratelimit": _error(429, {"retry-after-ms": "1500"}),
    "stall_headers": lambda r: _stream(r, b": ping\n\n", then=asyncio.sleep(60)),
    "stall_after_first": lambda r: _stream(
        r, _chunk(role="assistant"), _chunk(content="Hel"), then=asyncio.sleep(60)
    ),
    "malformed": lambda r: _stream(r, _chunk(content="Hel"), b"data: {not json\n\n"),
    "json": lambda r: asyncio.sleep(0, web.json_response({"choices": []})),
    "reset": _reset,
    "stream_error": lambda r: _stream(r, b'data: {"error": {"type": "server_error", "message": "x"}}\n\n'),
}


@pytest.fixture
async def fault() -> AsyncIterator[FaultServer]:
    server = FaultServer(port=free_port())
    app = web.Application()
    app.router.add_post("/{mode}/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


async def run_fault(
    fault: FaultServer, mode: str, key: str | None = KEY, **timeouts: float
) -> list[ChatEvent]:
    async with ChatClient(ChatEndpoint(fault.base_url(mode), key)) as chat:
        return [t.event for t in await collect(chat, SHORT, **timeouts)]


async def test_503_with_retry_after_is_transient(fault: FaultServer) -> None:
    """Stands in for an overloaded server: llama.cpp has no way to answer 503."""
    with pytest.raises(TransientLlmError) as caught:
        await run_fault(fault, "busy")
    error = caught.value
    assert (error.status, error.retry_after_s) == (503, 7.0)
    assert str(error) == f"127.0.0.1:{fault.port}: HTTP 503 (server_error)"
    assert SECRET not in str(error) and KEY not in str(error)


async def test_429_with_retry_after_ms_is_transient(fault: FaultServer) -> None:
    """Stands in for a rate-limiting provider (OpenAI's `retry-after-ms`); llama.cpp has none."""
    with pytest.raises(TransientLlmError) as caught:
        await run_fault(fault, "ratelimit")
    assert (caught.value.status, caught.value.retry_after_s) == (429, 1.5)


async def test_a_stall_after_the_headers_is_a_first_token_timeout(fault: FaultServer) -> None:
    """Stands in for a server that accepts and then hangs (keep-alive pings, no tokens),
    which llama.cpp cannot be made to do on purpose. The connection is closed at the timeout."""
    with pytest.raises(TransientLlmError, match=r"no first token within 0\.3 s") as caught:
        await run_fault(fault, "stall_headers", first=0.3)
    assert caught.value.status == 200
    await asyncio.wait_for(fault.gone["stall_headers"].wait(), 5)


async def test_a_stall_after_the_first_token_is_a_total_timeout(fault: FaultServer) -> None:
    """Stands in for a generation that hangs midway; llama.cpp does not."""
    with pytest.raises(TransientLlmError, match=r"response not finished within 0\.5 s"):
        await run_fault(fault, "stall_after_first", first=0.2, total=0.5)
    await asyncio.wait_for(fault.gone["stall_after_first"].wait(), 5)


async def test_aclose_closes_the_connection_at_once(fault: FaultServer) -> None:
    """The server side of closing: the handler of the stalled stream is cancelled."""
    async with ChatClient(ChatEndpoint(fault.base_url("stall_after_first"))) as chat:
        stream = chat.stream(SHORT, first_token_timeout_s=5, total_timeout_s=60)
        assert await anext(stream) == TextDelta("Hel")
        await stream.aclose()
        await asyncio.wait_for(fault.gone["stall_after_first"].wait(), 5)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_malformed_sse_is_not_transient(fault: FaultServer) -> None:
    """Stands in for a broken proxy or server; llama.cpp always sends valid JSON."""
    with pytest.raises(LlmError, match=r": bad stream: chunk is not valid JSON") as caught:
        await run_fault(fault, "malformed")
    assert not caught.value.transient


async def test_a_reply_that_is_not_an_event_stream_is_not_transient(fault: FaultServer) -> None:
    with pytest.raises(
        LlmError, match="expected an event stream, got content type application/json"
    ) as caught:
        await run_fault(fault, "json")
    assert not caught.value.transient


async def test_a_reset_mid_stream_is_transient(fault: FaultServer) -> None:
    """Stands in for a crashed server or dropped proxy connection."""
    with pytest.raises(TransientLlmError):
        await run_fault(fault, "reset")


async def test_an_error_event_inside_the_stream(fault: FaultServer) -> None:
    with pytest.raises(TransientLlmError, match=r"server reported an error in the stream \(server_error\)"):
        await run_fault(fault, "stream_error")


async def test_authorization_only_with_a_key_and_connections_are_reused(fault: FaultServer) -> None:
    assert len(await run_fault(fault, "ok", key=None)) > 10
    assert "Authorization" not in fault.headers[-1]
    async with aiohttp.ClientSession() as session:  # one pool for both clients
        whole = ChatClient(ChatEndpoint(fault.base_url("ok"), KEY), session=session)
        stalling = ChatClient(ChatEndpoint(fault.base_url("stall_after_first"), KEY), session=session)
        await collect(whole, SHORT)
        await collect(whole, SHORT)  # a stream read to its end hands its connection back
        stream = stalling.stream(SHORT, first_token_timeout_s=5, total_timeout_s=60)
        await anext(stream)
        await stream.aclose()  # one closed early takes its connection down with it
        await collect(whole, SHORT)
        await whole.aclose()  # a session given to the client is the caller's to close
        assert not session.closed
    assert [h.get("Authorization") for h in fault.headers[1:]] == [f"Bearer {KEY}"] * 4
    first, second, third, fourth = fault.peers[1:]
    assert first == second == third
    assert fourth != third


async def test_streams_read_to_their_end_reuse_the_connection_to_the_real_server(llama: LlamaServer) -> None:
    """llama.cpp's server (uvicorn) sends the chunked body's last chunk after `[DONE]`:
    reading it before handing the connection back keeps one connection for the call,
    instead of a new TCP (and TLS) handshake every turn."""
    opened = 0

    async def count(session: aiohttp.ClientSession, ctx: object, params: object) -> None:
        nonlocal opened
        opened += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(count)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        chat = ChatClient(ChatEndpoint(llama.base_url, KEY), session=session)
        for _ in range(4):
            timed = await collect(chat, SHORT)
            assert isinstance(timed[-1].event, Finished)
    assert opened == 1
