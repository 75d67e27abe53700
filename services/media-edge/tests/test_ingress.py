"""The edge's HTTP port on a real server (port 0) with a real HTTP client: routing,
refusals before any handler runs, bodies, static files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path

import aiohttp
import pytest

from voicemesh.edge.ingress import HttpRequest, HttpResponse, Socket, WebSocketIngress
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
        async with http.get(f"{base}/v1/x", headers={"x-key": "k"}) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST, DELETE"
        async with http.get(f"{base}/v1/nothing") as resp:
            assert resp.status == 404 and "calls go to /v1/call" in await resp.text()
        async with http.get(f"{base}/v1/call", headers={"x-key": "k"}) as resp:
            assert resp.status == 426  # a WebSocket endpoint asked without the upgrade
        async with http.post(f"{base}/v1/x", data=b"x" * 100_000, headers={"x-key": "k"}) as resp:
            assert resp.status == 413
    assert recorder.seen == []
    assert metrics.registry.get_sample_value("voicemesh_errors_total", {"service": "media-edge", "kind": "unauthorized"}) == 1


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
