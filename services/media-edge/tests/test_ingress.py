"""The edge's HTTP port on a real server (port 0) with real clients (aiohttp for HTTP, the
`websockets` client the CLI and bench use for WebSockets): routing, refusals before any
handler runs, bodies, static files, close codes, and a stop that lets live calls end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicemesh.edge.ingress import HttpRequest, HttpResponse, Socket, SocketClosed, WebSocketIngress
from voicemesh.mesh.metrics import ServiceMetrics

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.seen: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.seen.append(request)
        if request.body == b"boom":
            raise RuntimeError("the handler broke")
        return HttpResponse(HTTPStatus.CREATED, b"answer", "application/sdp", headers={"Location": "/v1/x/1"})


def refuse_without_key(request: HttpRequest) -> tuple[HTTPStatus, str] | None:
    return None if request.headers.get("x-key") == "k" else (HTTPStatus.UNAUTHORIZED, "no key")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Recorder, ServiceMetrics]]:
    metrics = ServiceMetrics.create("media-edge")
    ingress = WebSocketIngress("127.0.0.1", 0, metrics)
    recorder = Recorder()

    async def socket(ws: Socket) -> None:
        await ws.close()

    ingress.add_socket("/v1/call", refuse_without_key, socket, transport_label="native")
    ingress.add_http("/v1/x", refuse_without_key, recorder, methods=("POST", "DELETE"), prefix=True)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>page</p>")
    (tmp_path / "site" / "app.js").write_text("export {}")
    (tmp_path / "secret.txt").write_text("not for you")
    ingress.add_static("/", tmp_path / "site", index="index.html")
    await ingress.start()
    try:
        yield f"http://127.0.0.1:{ingress.port}", recorder, metrics
    finally:
        await ingress.stop()


async def test_a_post_reaches_its_handler_whole_and_the_answer_comes_back(served) -> None:  # type: ignore[no-untyped-def]
    base, recorder, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/x?agent=a", data=b"v=0\r\n", headers={"x-key": "k"}) as resp:
            assert resp.status == 201 and resp.content_type == "application/sdp"
            assert resp.headers["Location"] == "/v1/x/1" and await resp.read() == b"answer"
        async with http.delete(f"{base}/v1/x/abc", headers={"x-key": "k"}) as resp:
            assert resp.status == 201  # the prefix route answers below its path too
    first, second = recorder.seen
    assert (first.method, first.path, first.body, first.headers["X-KEY"]) == ("POST", "/v1/x?agent=a", b"v=0\r\n", "k")
    assert (second.method, second.path) == ("DELETE", "/v1/x/abc")


async def test_refusals_come_before_any_handler(served) -> None:  # type: ignore[no-untyped-def]
    base, recorder, metrics = served
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/x", data=b"v=0") as resp:
            assert resp.status == 401 and await resp.text() == "no key\n"
        async with http.get(f"{base}/v1/x") as resp:
            assert resp.status == 401  # the check comes before the method is looked at
        async with http.get(f"{base}/v1/x", headers={"x-key": "k"}) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST, DELETE"
        async with http.get(f"{base}/v1/nothing") as resp:
            assert resp.status == 404 and "calls go to /v1/call" in await resp.text()
        async with http.get(f"{base}/v1/call", headers={"x-key": "k"}) as resp:
            assert resp.status == 426  # a WebSocket endpoint asked without the upgrade
        async with http.post(f"{base}/v1/x", data=b"x" * 100_000, headers={"x-key": "k"}) as resp:
            assert resp.status == 413
    assert recorder.seen == []
    assert metrics.registry.get_sample_value("voicemesh_errors_total", {"service": "media-edge", "kind": "unauthorized"}) == 2


async def test_a_handler_that_fails_gets_500_and_the_next_request_is_served(served) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/x", data=b"boom", headers={"x-key": "k"}) as resp:
            assert resp.status == 500
        async with http.post(f"{base}/v1/x", data=b"ok", headers={"x-key": "k"}) as resp:
            assert resp.status == 201


async def test_static_files_and_no_way_out_of_their_folder(served) -> None:  # type: ignore[no-untyped-def]
    base, _, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html" and "page" in await resp.text()
        async with http.get(f"{base}/app.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
        for escape in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"):
            async with http.get(base + escape) as resp:
                assert resp.status == 404, escape
        for missing in ("/nothing.js", "/" + "a" * 300, "/%00"):  # too long, NUL: no such file
            async with http.get(base + missing) as resp:
                assert resp.status == 404, missing[:20]


async def read_all(ws: Socket) -> None:
    while True:
        await ws.recv()


@pytest.fixture
async def sockets() -> AsyncIterator[tuple[WebSocketIngress, dict[str, asyncio.Event]]]:
    """WebSocket routes the way the ports use them: a check, a reader, a close with a reason."""
    ingress = WebSocketIngress("127.0.0.1", 0, ServiceMetrics.create("media-edge"))
    seen = {"closed_again": asyncio.Event(), "live": asyncio.Event()}

    async def refuse_start(ws: Socket) -> None:
        await ws.recv()
        await ws.close(1008, "bad start message")

    async def end_with_long_reason(ws: Socket) -> None:
        await ws.close(1000, "é" * 100)  # 200 bytes: more than a close frame holds

    async def broken(ws: Socket) -> None:
        raise RuntimeError("the handler broke")

    async def read_past_close(ws: Socket) -> None:
        for _ in range(10):  # a port may ask again after the caller has gone
            with pytest.raises(SocketClosed):
                await ws.recv()
        seen["closed_again"].set()

    async def echo_then_end(ws: Socket) -> None:
        seen["live"].set()
        await ws.send(await ws.recv())
        await ws.close(1000, "hangup")

    async def hold(ws: Socket) -> None:
        seen["live"].set()
        with pytest.raises(SocketClosed):
            await read_all(ws)

    for path, handler in [
        ("/refuse", refuse_start),
        ("/long", end_with_long_reason),
        ("/broken", broken),
        ("/gone", read_past_close),
        ("/echo", echo_then_end),
        ("/hold", hold),
    ]:
        ingress.add_socket(path, lambda request: None, handler, transport_label="native")
    await ingress.start()
    try:
        yield ingress, seen
    finally:
        await ingress.stop()


async def closed_with(url: str, send: str | None = None) -> tuple[int, str]:
    async with connect(url, ping_interval=None) as ws:
        if send is not None:
            await ws.send(send)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_close_codes_and_reasons_reach_the_websockets_client(sockets) -> None:  # type: ignore[no-untyped-def]
    ingress, seen = sockets
    assert await closed_with(ingress.url("/refuse"), send="{}") == (1008, "bad start message")
    code, reason = await closed_with(ingress.url("/long"))
    assert code == 1000 and reason == "é" * 61  # cut to fit, on a character boundary
    assert await closed_with(ingress.url("/broken")) == (1011, "internal error")
    assert await closed_with(ingress.url("/refuse"), send="{}") == (1008, "bad start message")
    async with connect(ingress.url("/gone"), ping_interval=None):
        pass
    await asyncio.wait_for(seen["closed_again"].wait(), 5)


async def refused_within(url: str, limit_s: float) -> bool:
    """Whether a new connection is refused before `limit_s` (the listener closes as stop begins)."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with connect(url, ping_interval=None, open_timeout=1):
                pass
        except OSError:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_stop_lets_a_live_call_end_itself_then_closes_the_rest(sockets) -> None:  # type: ignore[no-untyped-def]
    ingress, seen = sockets
    url = ingress.url("/echo")
    async with connect(url, ping_interval=None) as ws:
        await asyncio.wait_for(seen["live"].wait(), 5)
        stopping = asyncio.create_task(ingress.stop(grace_s=5))
        assert await refused_within(url, 5)  # no new calls...
        await ws.send("bye")  # ...but this one still hears and is heard
        assert await ws.recv() == "bye"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000 and ws.close_reason == "hangup"
        await asyncio.wait_for(stopping, 5)


async def test_stop_closes_a_call_still_open_after_the_grace_with_1001(sockets) -> None:  # type: ignore[no-untyped-def]
    ingress, seen = sockets
    async with connect(ingress.url("/hold"), ping_interval=None) as ws:
        await asyncio.wait_for(seen["live"].wait(), 5)
        await asyncio.wait_for(ingress.stop(grace_s=0.05), 5)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1001
