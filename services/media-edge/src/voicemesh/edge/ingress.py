"""The edge's one HTTP port (aiohttp): WebSocket transports, HTTP endpoints and static
files, by path.

Every transport that speaks over WebSocket (the native stream at /v1/call, the Twilio
Media Streams stream at /v1/twilio) registers a route with its own authentication check;
HTTP endpoints (Twilio's <Connect action> callback, WebRTC's WHIP offers and hang-ups)
register with the methods they take; the softphone page is static files. A request for
another path gets 404, an unauthenticated one 401/403, before any upgrade or handler.

Keepalive: the ingress pings every WebSocket each `ping_interval_s` and drops the
connection when the pong takes longer than `ping_timeout_s`. Pongs are read by `recv()`
(every port keeps a reader on it); the round trip of each is observed in
`voicemesh_media_rtt_seconds` under the route's transport label. There is no access log:
tokens can travel in query strings.

Stopping: the listener closes at once, and live WebSockets keep working for a grace period
(the edge is ending its calls with their own close codes). Only those still open after it
are closed with 1001, and then aiohttp's runner is cleaned up. Not the other way round:
aiohttp's shutdown discards whatever a connection receives from then on, which would leave
a call that is still ending deaf until its keepalive timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from voicemesh.mesh.aio import cancel_and_wait
from voicemesh.mesh.metrics import ServiceMetrics

log = logging.getLogger(__name__)

PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
MAX_BODY_BYTES = 65_536
MAX_MESSAGE_BYTES = 1 << 20
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes
STOP_GRACE_S = 1.0
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".wav": "audio/wav",
}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # with its query string, as sent: "/v1/whip?agent=x"
    headers: Mapping[str, str]  # case-insensitive
    body: bytes = b""
    remote: str = ""


@dataclass(frozen=True)
class HttpResponse:
    status: HTTPStatus
    body: str | bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


class SocketClosed(Exception):
    """The WebSocket is closed (by either side)."""


class Socket(ABC):
    """What a WebSocket route's handler gets."""

    request: HttpRequest

    @abstractmethod
    async def recv(self) -> str | bytes:
        """The next text or binary message; SocketClosed once the socket is closed."""

    @abstractmethod
    async def send(self, data: str | bytes) -> None: ...

    @abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    @abstractmethod
    async def wait_closed(self) -> None: ...


Authorize = Callable[[HttpRequest], tuple[HTTPStatus, str] | None]
SocketHandler = Callable[[Socket], Awaitable[None]]
HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True)
class _Route:
    authorize: Authorize
    socket: SocketHandler | None = None
    http: HttpHandler | None = None
    methods: tuple[str, ...] = ("GET",)
    transport_label: str = ""


class _AiohttpSocket(Socket):
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: HttpRequest,
        on_round_trip: Callable[[float], None],
    ) -> None:
        self.request = request
        self._ws = ws
        self._on_round_trip = on_round_trip
        self._pings: dict[bytes, float] = {}
        self._ponged = asyncio.Event()
        self._closed = asyncio.Event()

    async def recv(self) -> str | bytes:
        if self._ws.closed:  # aiohttp raises RuntimeError after a few reads of a closed socket
            self._closed.set()
            raise SocketClosed("closed")
        loop = asyncio.get_running_loop()
        while True:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.TEXT:
                return str(msg.data)
            if msg.type == WSMsgType.BINARY:
                return bytes(msg.data)
            if msg.type == WSMsgType.PING:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self._ws.pong(msg.data)
                continue
            if msg.type == WSMsgType.PONG:
                sent = self._pings.pop(bytes(msg.data), None)
                if sent is not None:
                    self._on_round_trip(loop.time() - sent)
                    self._ponged.set()
                continue
            self._closed.set()  # CLOSE, CLOSING, CLOSED, ERROR
            raise SocketClosed(str(msg.extra or msg.type.name))

    async def send(self, data: str | bytes) -> None:
        if self._ws.closed:
            raise SocketClosed("closed")
        try:
            if isinstance(data, str):
                await self._ws.send_str(data)
            else:
                await self._ws.send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:
            self._closed.set()
            raise SocketClosed(str(exc)) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        # cut on a character boundary: a reason that is not UTF-8 makes the peer fail with 1007
        message = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.close(code=code, message=message)
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def keepalive(self, interval_s: float, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        while not self._ws.closed:
            await asyncio.sleep(interval_s)
            payload = secrets.token_bytes(4)
            self._pings = {payload: loop.time()}  # a pong to an older ping is not awaited
            self._ponged.clear()
            try:
                await self._ws.ping(payload)
                await asyncio.wait_for(self._ponged.wait(), timeout_s)
            except (ConnectionError, RuntimeError):
                self._closed.set()
                return
            except TimeoutError:
                await self.close(1011, "keepalive ping timeout")
                return


class WebSocketIngress:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: ServiceMetrics,
        *,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
    ) -> None:
        self._host = host
        self._port = port
        self._metrics = metrics
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._routes: dict[str, _Route] = {}
        self._prefixes: dict[str, _Route] = {}
        self._static: dict[str, tuple[Path, str | None]] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._live: set[_AiohttpSocket] = set()
        self._none_live = asyncio.Event()
        self._none_live.set()

    def add_socket(
        self, path: str, authorize: Authorize, handler: SocketHandler, *, transport_label: str
    ) -> None:
        """A WebSocket endpoint; `transport_label` labels its connections' round trips."""
        self._routes[path] = _Route(authorize, socket=handler, transport_label=transport_label)

    def add_http(
        self,
        path: str,
        authorize: Authorize,
        handler: HttpHandler,
        *,
        methods: tuple[str, ...] = ("GET",),
        prefix: bool = False,
    ) -> None:
        """An HTTP endpoint; with `prefix`, every path under `path + "/"` too."""
        route = _Route(authorize, http=handler, methods=methods)
        self._routes[path] = route
        if prefix:
            self._prefixes[path.rstrip("/") + "/"] = route

    def add_static(self, prefix: str, directory: Path, *, index: str | None = None) -> None:
        """GET the files of `directory` under `prefix`, open to all (a page and its assets)."""
        self._static[prefix.rstrip("/") + "/"] = (directory.resolve(), index)

    @property
    def port(self) -> int:
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://{self._host}:{self.port}{path}"

    def _route(self, path: str) -> _Route | None:
        route = self._routes.get(path)
        if route is not None:
            return route
        for prefix, candidate in self._prefixes.items():
            if path.startswith(prefix):
                return candidate
        return None

    def _static_file(self, path: str) -> Path | None:
        for prefix, (directory, index) in sorted(self._static.items(), key=lambda kv: -len(kv[0])):
            if path + "/" == prefix or path == prefix:
                rel = index
            elif path.startswith(prefix):
                rel = path[len(prefix) :]
            else:
                continue
            if not rel:
                return None
            try:
                candidate = (directory / rel).resolve()
                found = candidate.is_file() and candidate.is_relative_to(directory)
            except (OSError, ValueError):  # a name too long, a NUL byte: no such file either
                return None
            return candidate if found else None
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = urlsplit(request.path_qs).path
        route = self._route(path)
        if route is None:
            # files are looked up by the decoded path; resolving it keeps "%2e%2e" in the folder too
            static = self._static_file(request.path) if request.method in ("GET", "HEAD") else None
            if static is not None:
                return web.Response(
                    body=static.read_bytes(),
                    headers={
                        "Content-Type": _CONTENT_TYPES.get(static.suffix, "application/octet-stream"),
                        "Cache-Control": "no-cache",
                    },
                )
            known = ", ".join(p for p, r in self._routes.items() if r.socket is not None)
            return _plain(HTTPStatus.NOT_FOUND, f"no such endpoint; calls go to {known}")
        # the body is read first, within its limit, because a check can need it (Twilio's signature
        # covers POST parameters); nothing else is answered before the check
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _plain(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a request body is at most {MAX_BODY_BYTES} bytes"
            )
        try:
            body = await request.read() if request.can_read_body else b""
        except web.HTTPRequestEntityTooLarge:
            return _plain(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a request body is at most {MAX_BODY_BYTES} bytes"
            )
        head = HttpRequest(request.method, request.path_qs, request.headers, body, request.remote or "")
        refused = route.authorize(head)
        if refused is not None:
            self._metrics.error("unauthorized")
            return _plain(*refused)
        if route.http is not None and request.method not in route.methods:
            return _plain(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{path} takes {', '.join(route.methods)}",
                {"Allow": ", ".join(route.methods)},
            )
        if route.http is not None:
            try:
                answer = await route.http(head)
            except Exception:
                log.exception("http handler failed", extra={"path": path})
                return _plain(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
            headers = {**answer.headers, "Content-Type": answer.content_type}
            body_out = answer.body.encode() if isinstance(answer.body, str) else answer.body
            return web.Response(status=answer.status, body=body_out, headers=headers)
        assert route.socket is not None
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _plain(HTTPStatus.UPGRADE_REQUIRED, f"{path} is a WebSocket endpoint")
        return await self._serve_socket(request, head, route)

    async def _serve_socket(
        self, request: web.Request, head: HttpRequest, route: _Route
    ) -> web.StreamResponse:
        assert route.socket is not None
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=False)
        await ws.prepare(request)
        label, metrics = route.transport_label, self._metrics
        socket = _AiohttpSocket(ws, head, lambda seconds: metrics.observe_rtt(label, seconds))
        keepalive = asyncio.create_task(socket.keepalive(self._ping_interval_s, self._ping_timeout_s))
        self._live.add(socket)
        self._none_live.clear()
        try:
            await route.socket(socket)
        except Exception:
            log.exception("websocket handler failed", extra={"path": urlsplit(head.path).path})
            await socket.close(1011, "internal error")
        finally:
            await cancel_and_wait(keepalive)
            if not ws.closed:
                await socket.close(1000)
            self._live.discard(socket)
            if not self._live:
                self._none_live.set()
        return ws

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}") from None

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting at once; give live WebSockets `grace_s` to end on their own (the
        edge is ending its calls), close the rest with 1001, then let go of the runner."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        if self._site is not None:
            site, self._site = self._site, None
            await site.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_live.wait(), grace_s)
        await asyncio.gather(*(s.close(1001, "the edge is shutting down") for s in list(self._live)))
        await runner.cleanup()


def _plain(status: HTTPStatus, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)
