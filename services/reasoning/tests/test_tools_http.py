"""HTTP tools against a real aiohttp booking service on 127.0.0.1, port 0: the service the
agent's tools call, checking its bearer token like a real one would."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from voicemesh.agent import Agent, Tool, ToolAuth
from voicemesh.reasoning.tool_codec import ToolFailure
from voicemesh.reasoning.tools import ToolBox

pytestmark = pytest.mark.integration

TOKEN = "s3cret-booking-token"
API_KEY = "k3y-for-the-menu"
PARAMETERS = {
    "type": "object",
    "properties": {
        "party_size": {"type": "integer", "minimum": 1},
        "date": {"type": "string"},
        "outdoor": {"type": "boolean"},
        "name": {"type": "string"},
        "preferences": {"type": "object"},
    },
    "required": ["party_size"],
}
WAIT_S = 5.0  # a deadline for events, never a sleep


@dataclass
class BookingService:
    """What the service saw, and gates a test opens."""

    port: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_gone: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def availability(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"available": True, "query": dict(request.query)})

    async def book(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        return web.json_response({"booked": True, "content_type": request.content_type, "body": body})

    async def menu(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.headers.get("X-Api-Key") != API_KEY:
            return web.Response(status=401)
        return web.Response(text="Today: risotto and tiramisu.", content_type="text/plain")

    async def slow(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        self.slow_started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.slow_gone.set()  # the client went away
            raise
        return web.json_response({"late": True})

    async def broken(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return web.json_response({"error": "database down"}, status=500)

    async def huge(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return web.json_response({"rows": ["x" * 100] * 1_000})

    async def huge_streamed(self, request: web.Request) -> web.StreamResponse:
        """No Content-Length: the size shows only while reading."""
        self.requests.append((request.method, request.path))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x" * 1024)
        await response.write_eof()
        return response

    async def moved(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        raise web.HTTPFound(self.url("/availability"))


@pytest.fixture
async def service() -> AsyncIterator[BookingService]:
    booking = BookingService()
    app = web.Application()
    app.router.add_get("/availability", booking.availability)
    app.router.add_post("/book", booking.book)
    app.router.add_get("/menu", booking.menu)
    app.router.add_get("/slow", booking.slow)
    app.router.add_get("/broken", booking.broken)
    app.router.add_get("/huge", booking.huge)
    app.router.add_get("/huge-streamed", booking.huge_streamed)
    app.router.add_get("/moved", booking.moved)
    # Cancel a handler when its client disconnects, so the test sees the request go away.
    # No access log: it is the far service's (it would show GET query strings).
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    booking.port = runner.addresses[0][1]
    try:
        yield booking
    finally:
        booking.release.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toolbox(service: BookingService, **overrides: Any) -> ToolBox:
    bearer = ToolAuth(env="BOOKING_TOKEN")
    tools = [
        Tool(
            name="check_availability",
            description="Is a table free?",
            url=service.url("/availability"),
            method="GET",
            parameters=PARAMETERS,
            auth=bearer,
        ),
        Tool(
            name="book_table",
            description="Book a table.",
            url=service.url("/book"),
            method="POST",
            parameters=PARAMETERS,
            auth=bearer,
        ),
        Tool(
            name="check_without_token",
            description="Misconfigured: no auth.",
            url=service.url("/availability"),
            method="GET",
        ),
        Tool(
            name="check_wrong_token",
            description="Misconfigured: the wrong secret.",
            url=service.url("/availability"),
            method="GET",
            auth=ToolAuth(env="OLD_TOKEN"),
        ),
        Tool(
            name="menu",
            description="Today's menu.",
            url=service.url("/menu"),
            method="GET",
            auth=ToolAuth(header="X-Api-Key", env="MENU_KEY", scheme=""),
        ),
        Tool(name="slow", description="Slow.", url=service.url("/slow"), method="GET", timeout_ms=100),
        Tool(
            name="slow_patient",
            description="Slow.",
            url=service.url("/slow"),
            method="GET",
            timeout_ms=60_000,
        ),
        Tool(name="broken", description="Fails.", url=service.url("/broken"), method="GET"),
        Tool(name="huge", description="Too much.", url=service.url("/huge"), method="GET"),
        Tool(name="huge_streamed", description="Too much.", url=service.url("/huge-streamed"), method="GET"),
        Tool(name="moved", description="Redirects.", url=service.url("/moved"), method="GET", auth=bearer),
        Tool(name="nowhere", description="Closed port.", url=f"http://127.0.0.1:{closed_port()}/x"),
    ]
    env = {"BOOKING_TOKEN": TOKEN, "OLD_TOKEN": "expired-token", "MENU_KEY": API_KEY}
    return ToolBox.from_agent(Agent(id="bella-vista", name="Bella Vista", tools=tools), env, **overrides)


async def test_get_sends_the_arguments_as_query_parameters_with_the_token(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    ticks = iter([10.0, 10.25])
    box = toolbox(service, clock=lambda: next(ticks))
    arguments = '{"party_size": 4, "date": "2025-03-14", "outdoor": false, "preferences": {"quiet": true}}'
    result = await box.call("check_availability", arguments, session=session)
    assert result.ok, result.error
    assert (result.status, result.error, result.failure, result.duration_ms) == (200, "", None, 250)
    assert json.loads(result.result_json) == {
        "available": True,
        "query": {
            "party_size": "4",
            "date": "2025-03-14",
            "outdoor": "false",
            "preferences": '{"quiet":true}',
        },
    }
    assert result.arguments_json == arguments
    assert service.requests == [("GET", "/availability")]


async def test_post_sends_the_arguments_as_a_json_body(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    result = await toolbox(service).call(
        "book_table", '{"party_size": 2, "name": "Zoë Rossi"}', session=session
    )
    assert result.ok, result.error
    assert json.loads(result.result_json) == {
        "booked": True,
        "content_type": "application/json",
        "body": {"party_size": 2, "name": "Zoë Rossi"},
    }


@pytest.mark.parametrize("name", ["check_without_token", "check_wrong_token"])
async def test_the_service_refuses_a_missing_or_wrong_token(
    service: BookingService, session: aiohttp.ClientSession, name: str
) -> None:
    result = await toolbox(service).call(name, "{}", session=session)
    assert (result.ok, result.status, result.failure) == (False, 401, ToolFailure.HTTP_STATUS)
    assert json.loads(result.result_json) == {
        "error": "the tool answered HTTP 401",
        "status": 401,
        "detail": {"error": "unauthorized"},
    }


async def test_a_custom_header_carries_the_bare_secret_and_text_is_wrapped(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    result = await toolbox(service).call("menu", "", session=session)
    assert (result.ok, result.status) == (True, 200)
    assert json.loads(result.result_json) == {"text": "Today: risotto and tiramisu."}


async def test_a_500_fails_with_the_service_detail(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    result = await toolbox(service).call("broken", "{}", session=session)
    assert (result.ok, result.status, result.failure) == (False, 500, ToolFailure.HTTP_STATUS)
    assert result.error == "the tool answered HTTP 500"
    assert json.loads(result.result_json)["detail"] == {"error": "database down"}


async def test_a_slow_tool_times_out_at_its_timeout_ms(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    result = await asyncio.wait_for(toolbox(service).call("slow", "{}", session=session), WAIT_S)
    assert (result.ok, result.failure, result.status) == (False, ToolFailure.TIMEOUT, None)
    assert json.loads(result.result_json) == {"error": "the tool did not answer within 100 ms"}
    assert service.slow_started.is_set()
    await asyncio.wait_for(service.slow_gone.wait(), WAIT_S)


async def test_a_shorter_timeout_s_wins_over_the_tools_own(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    call = toolbox(service).call("slow_patient", "{}", session=session, timeout_s=0.05)
    result = await asyncio.wait_for(call, WAIT_S)
    assert (result.ok, result.failure) == (False, ToolFailure.TIMEOUT)
    assert result.error == "the tool did not answer within 50 ms"


@pytest.mark.parametrize("name", ["huge", "huge_streamed"])
async def test_an_answer_over_the_size_cap_fails(
    service: BookingService, session: aiohttp.ClientSession, name: str
) -> None:
    result = await toolbox(service).call(name, "{}", session=session)
    assert (result.ok, result.failure, result.status) == (False, ToolFailure.TOO_LARGE, 200)
    assert json.loads(result.result_json) == {
        "error": "the tool's answer is larger than 64 KB",
        "status": 200,
    }


async def test_the_size_cap_is_configurable(service: BookingService, session: aiohttp.ClientSession) -> None:
    result = await toolbox(service, max_body_bytes=200 * 1024).call("huge", "{}", session=session)
    assert result.ok
    assert len(json.loads(result.result_json)["rows"]) == 1_000


async def test_a_closed_port_fails_to_connect(
    session: aiohttp.ClientSession, service: BookingService
) -> None:
    result = await toolbox(service).call("nowhere", "{}", session=session)
    assert (result.ok, result.failure, result.status) == (False, ToolFailure.CONNECT, None)
    assert json.loads(result.result_json) == {"error": "could not connect to the tool"}


async def test_a_redirect_is_not_followed(service: BookingService, session: aiohttp.ClientSession) -> None:
    result = await toolbox(service).call("moved", "{}", session=session)
    assert (result.ok, result.status) == (False, 302)
    assert service.requests == [("GET", "/moved")]


async def test_cancelling_the_call_propagates_and_the_request_goes_away(
    service: BookingService, session: aiohttp.ClientSession
) -> None:
    call = asyncio.create_task(toolbox(service).call("slow_patient", "{}", session=session))
    await asyncio.wait_for(service.slow_started.wait(), WAIT_S)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(service.slow_gone.wait(), WAIT_S)


@pytest.mark.parametrize(
    "arguments_json", ['{"party_size": "four"}', '{"date": "2025-03-14"}', "not json", '{"party_size": 0}']
)
async def test_bad_arguments_never_reach_the_service(
    service: BookingService, session: aiohttp.ClientSession, arguments_json: str
) -> None:
    box = toolbox(service)
    for name in ("check_availability", "book_table"):
        result = await box.call(name, arguments_json, session=session)
        assert (result.ok, result.failure) == (False, ToolFailure.BAD_ARGUMENTS)
    assert service.requests == []


async def test_log_text_holds_neither_the_secret_nor_the_arguments(
    service: BookingService, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    box = toolbox(service)
    with caplog.at_level(logging.DEBUG):
        await box.call("book_table", '{"party_size": 2, "name": "Giuseppe Verdi"}', session=session)
        await box.call("check_availability", '{"party_size": 3, "name": "Giuseppe Verdi"}', session=session)
        await box.call("broken", '{"name": "Giuseppe Verdi"}', session=session)
    ours = [r for r in caplog.records if r.name == "voicemesh.reasoning.tools"]
    assert [(r.tool, r.status) for r in ours] == [  # type: ignore[attr-defined]
        ("book_table", 200),
        ("check_availability", 200),
        ("broken", 500),
    ]
    for record in caplog.records:
        text = record.getMessage() + json.dumps({k: str(v) for k, v in vars(record).items()})
        assert TOKEN not in text
        assert "Verdi" not in text
