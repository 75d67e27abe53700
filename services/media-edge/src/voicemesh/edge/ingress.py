"""The edge's one HTTP port: WebSocket transports and small HTTP endpoints by path.

Every transport that speaks over WebSocket (the native stream at /v1/call, the Twilio
Media Streams stream at /v1/twilio) registers a route with its own authentication check;
plain HTTP GET endpoints (Twilio's <Connect action> callback) register too. A request for
another path gets 404, an unauthenticated one 401/403, before any upgrade.

Every connection is kept alive by websockets' keepalive: a ping every `ping_interval_s`, the
connection dropped when its pong takes longer than `ping_timeout_s`. The round trip of every
ping is observed in `voicemesh_media_rtt_seconds` under the route's transport label.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import DataLike

from voicemesh.mesh.metrics import ServiceMetrics

log = logging.getLogger(__name__)

# (status, reason) to refuse the request with, or None to accept it.
Authorize = Callable[[Request], tuple[HTTPStatus, str] | None]
SocketHandler = Callable[[ServerConnection], Awaitable[None]]
# GET without an upgrade: (status, content type, body).
HttpHandler = Callable[[Request], tuple[HTTPStatus, str, str]]


PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class _Route:
    authorize: Authorize
    socket: SocketHandler | None = None
    http: HttpHandler | None = None
    transport_label: str = ""


class _TimedConnection(ServerConnection):
    """A server connection that reports the round trip of each ping it sends, the
    keepalive's included (websockets resolves a ping's future with its latency on the pong)."""

    on_round_trip: Callable[[float], None] | None = None

    async def ping(self, data: DataLike | None = None) -> Awaitable[float]:
        pong = await super().ping(data)
        report = self.on_round_trip
        if report is not None and isinstance(pong, asyncio.Future):

            def done(fut: asyncio.Future[float]) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    report(fut.result())

            pong.add_done_callback(done)
        return pong


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
        self._server: Server | None = None

    def add_socket(
        self, path: str, authorize: Authorize, handler: SocketHandler, *, transport_label: str
    ) -> None:
        """A WebSocket endpoint; `transport_label` labels its connections' round trips."""
        self._routes[path] = _Route(authorize, socket=handler, transport_label=transport_label)

    def add_http(self, path: str, authorize: Authorize, handler: HttpHandler) -> None:
        self._routes[path] = _Route(authorize, http=handler)

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(next(iter(self._server.sockets)).getsockname()[1])

    def url(self, path: str) -> str:
        return f"ws://{self._host}:{self.port}{path}"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        route = self._routes.get(path)
        if route is None:
            known = ", ".join(p for p, r in self._routes.items() if r.socket is not None)
            return conn.respond(HTTPStatus.NOT_FOUND, f"no such endpoint; calls go to {known}\n")
        refused = route.authorize(request)
        if refused is not None:
            self._metrics.error("unauthorized")
            status, reason = refused
            return conn.respond(status, reason + "\n")
        if route.http is not None:
            status, content_type, body = route.http(request)
            response = conn.respond(status, body)
            response.headers = Headers(
                [(k, v) for k, v in response.headers.raw_items() if k.lower() != "content-type"]
            )
            response.headers["Content-Type"] = content_type
            return response
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return conn.respond(HTTPStatus.UPGRADE_REQUIRED, f"{path} is a WebSocket endpoint\n")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        route = self._routes[urlsplit(ws.request.path).path]
        assert route.socket is not None
        if isinstance(ws, _TimedConnection):
            label, metrics = route.transport_label, self._metrics
            ws.on_round_trip = lambda seconds: metrics.observe_rtt(label, seconds)
        await route.socket(ws)

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._serve,
                self._host,
                self._port,
                process_request=self._process_request,
                max_size=1 << 20,
                ping_interval=self._ping_interval_s,
                ping_timeout=self._ping_timeout_s,
                create_connection=_TimedConnection,
            )
        except OSError as exc:
            raise OSError(f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}") from None

    async def stop(self) -> None:
        """Stop accepting connections; live ones go on."""
        if self._server is not None:
            self._server.close(close_connections=False)
