"""A streaming client for OpenAI-compatible chat endpoints (vLLM, Ollama, llama.cpp's
server, OpenAI): a thin aiohttp shell around the pure `openai_wire`.

    client = ChatClient(endpoint_from_config(agent.backend, os.environ))
    stream = client.stream(request, first_token_timeout_s=4, total_timeout_s=20)
    async with stream:
        async for event in stream:            # TextDelta, ToolCallDone, Finished
            ...
    await client.aclose()

The request goes out at the first `anext`. Leaving early (`aclose`, `break` inside `async
with`, or cancelling the task that waits on `anext`) closes the HTTP connection at once, so
the server sees the client go away and stops generating. A stream read to its end hands its
connection back for the next request.

Errors: `TransientLlmError` (cannot connect, connection reset or cut short, 408/429/5xx, no
first token or no end within the deadlines) and `LlmError` (other 4xx, bad wire data). Their
messages name the endpoint's host and the status, never the key or the prompt. There is no
retry here: the caller decides, from `error.transient` and `error.retry_after_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Protocol
from urllib.parse import urlsplit

import aiohttp

from .openai_wire import (
    ChatEvent,
    ChatRequest,
    ChatStreamDecoder,
    WireError,
    encode_request,
    error_summary,
    retry_after_s,
)

MAX_ERROR_BODY = 64 * 1024
READ_SIZE = 64 * 1024
DRAIN_S = 0.05
_TRANSIENT_STATUS = frozenset({408, 425, 429})


class LlmError(RuntimeError):
    """The endpoint failed in a way trying again will not fix (bad key, unknown model, bad
    request, bytes that are not a chat stream)."""

    transient: ClassVar[bool] = False

    def __init__(
        self, message: str, *, host: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.host = host
        self.status = status
        # What the server asked for (Retry-After / retry-after-ms), if it said.
        self.retry_after_s = retry_after_s


class TransientLlmError(LlmError):
    """The endpoint failed in a way that may pass: try again or fall back."""

    transient: ClassVar[bool] = True


class ApiKeyError(ValueError):
    """The configured API key cannot be read (the message names the variable or file)."""


@dataclass(frozen=True)
class ChatEndpoint:
    """`base_url` as OpenAI clients take it (ending in `/v1`); the key never in repr."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"base_url must be an http:// or https:// URL with a host (scheme {parts.scheme!r}, "
                f"host {parts.hostname or ''!r})"
            )

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def host(self) -> str:
        """host:port, for messages (no path, query or credentials)."""
        parts = urlsplit(self.base_url)
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{parts.hostname}:{port}" if port else str(parts.hostname)


class _EndpointConfig(Protocol):
    """What `endpoint_from_config` reads (the agent schema's `LlmEndpoint` has it)."""

    @property
    def base_url(self) -> str: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def api_key_file(self) -> str | None: ...


def read_api_key(
    *,
    env_name: str | None,
    file_path: str | Path | None,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
) -> str | None:
    """The key from the environment variable `env_name`, else from `file_path` (relative to
    `base_dir`); None when neither is configured. ApiKeyError when one is configured but
    empty or missing (a key in a wrong place must not silently become "no key")."""
    if env_name:
        value = environ.get(env_name, "").strip()
        if value:
            return value
        if not file_path:
            raise ApiKeyError(f"environment variable {env_name} (the API key) is not set")
    if file_path:
        path = Path(file_path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ApiKeyError(
                f"API key file {path} cannot be read ({exc.strerror or type(exc).__name__})"
            ) from None
        if not value:
            raise ApiKeyError(f"API key file {path} is empty")
        return value
    return None


def endpoint_from_config(
    config: _EndpointConfig, environ: Mapping[str, str], base_dir: Path | None = None
) -> ChatEndpoint:
    """A `ChatEndpoint` from an agent's `LlmEndpoint` (its key read now, from env or file)."""
    key = read_api_key(
        env_name=config.api_key_env, file_path=config.api_key_file, environ=environ, base_dir=base_dir
    )
    return ChatEndpoint(config.base_url, key)


class ChatClient:
    """Streams chat completions from one endpoint over one pooled aiohttp session."""

    def __init__(
        self,
        endpoint: ChatEndpoint,
        *,
        connect_timeout_s: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._session = session
        self._own_session = session is None
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if endpoint.api_key:
            self._headers["Authorization"] = f"Bearer {endpoint.api_key}"

    def stream(
        self, request: ChatRequest, *, first_token_timeout_s: float, total_timeout_s: float
    ) -> ChatStream:
        """The events of one completion. ValueError at once for a request no server would
        accept; everything else surfaces while iterating."""
        if first_token_timeout_s <= 0 or total_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        body = encode_request(request)
        return ChatStream(
            self._get_session(), self.endpoint, body, self._headers, first_token_timeout_s, total_timeout_s
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._own_session:
                raise RuntimeError("the ClientSession given to ChatClient is closed")
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            )
        return self._session

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ChatStream:
    """One streamed completion: an async iterator of `ChatEvent`s and an async context
    manager. Not reusable; iterate it from one task at a time."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: ChatEndpoint,
        body: bytes,
        headers: Mapping[str, str],
        first_token_timeout_s: float,
        total_timeout_s: float,
    ) -> None:
        self._session = session
        self._endpoint = endpoint
        self._host = endpoint.host
        self._body = body
        self._headers = headers
        self._first_token_timeout_s = first_token_timeout_s
        self._total_timeout_s = total_timeout_s
        self._decoder = ChatStreamDecoder()
        self._pending: deque[ChatEvent] = deque()
        self._response: aiohttp.ClientResponse | None = None
        self._status: int | None = None
        self._first_deadline = 0.0
        self._total_deadline = 0.0
        self._sent = False
        self._closed = False

    @property
    def status(self) -> int | None:
        """The HTTP status, once the response headers have arrived."""
        return self._status

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatEvent:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            try:
                await self._step()
            except BaseException as exc:
                self._abort()
                mapped = self._map(exc)
                if mapped is None:
                    raise
                raise mapped from None
        return self._pending.popleft()

    async def aclose(self) -> None:
        self._abort()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._abort()

    # --- internals ---

    async def _step(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._sent:
            self._sent = True
            now = loop.time()
            self._first_deadline = now + self._first_token_timeout_s
            self._total_deadline = now + self._total_timeout_s
        async with asyncio.timeout_at(self._deadline()):
            if self._response is None:
                self._response = await self._session.post(
                    self._endpoint.url, data=self._body, headers=self._headers, allow_redirects=False
                )
                self._status = self._response.status
                await self._check_status(self._response)
            data = await self._response.content.readany()
        events = self._decoder.feed(data) if data else self._decoder.end_of_stream()
        self._pending.extend(events)
        if self._decoder.finished:
            await self._drain()
            self._finish()

    async def _drain(self) -> None:
        """After `[DONE]`, read the body's end (the chunked encoding's last chunk, which
        usually follows at once): only a body read to its end lets aiohttp keep the
        connection for the next request. Given up after DRAIN_S or MAX_ERROR_BODY bytes."""
        response = self._response
        if response is None or response.content.at_eof():
            return
        left = MAX_ERROR_BODY
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with asyncio.timeout(DRAIN_S):
                while left > 0 and not response.content.at_eof():
                    left -= len(await response.content.readany())

    def _deadline(self) -> float:
        if self._decoder.started:
            return self._total_deadline
        return min(self._first_deadline, self._total_deadline)

    async def _check_status(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if status == 200:
            kind = response.headers.get("Content-Type", "")
            if not kind.lower().startswith("text/event-stream"):
                shown = kind.split(";")[0].strip()[:60] or "none"
                raise LlmError(
                    f"{self._host}: expected an event stream, got content type {shown}",
                    host=self._host,
                    status=status,
                )
            return
        body = await _read_some(response, MAX_ERROR_BODY)
        summary = error_summary(body)
        what = f"{self._host}: HTTP {status}" + (f" ({summary})" if summary else "")
        if status in _TRANSIENT_STATUS or status >= 500:
            wait = retry_after_s(
                response.headers.get("Retry-After"),
                response.headers.get("retry-after-ms"),
                now_epoch_s=time.time(),
            )
            raise TransientLlmError(what, host=self._host, status=status, retry_after_s=wait)
        raise LlmError(what, host=self._host, status=status)

    def _finish(self) -> None:
        """The stream ended properly: hand the connection back (aiohttp closes it instead
        if the body was not read to its end)."""
        self._closed = True
        if self._response is not None:
            if self._response.content.at_eof():
                self._response.release()
            else:
                self._response.close()
            self._response = None

    def _abort(self) -> None:
        """Close the connection now (mid-stream: the server sees the client leave)."""
        self._closed = True
        self._pending.clear()
        if self._response is not None:
            self._response.close()
            self._response = None

    def _map(self, exc: BaseException) -> LlmError | None:
        """The LlmError an exception from `_step` stands for; None to re-raise it as is
        (cancellation, our own LlmErrors, programming errors)."""
        host = self._host
        status = self._status
        if isinstance(exc, LlmError | asyncio.CancelledError) or not isinstance(exc, Exception):
            return None
        if isinstance(exc, WireError):
            kind = TransientLlmError if exc.transient else LlmError
            return kind(f"{host}: bad stream: {exc}", host=host, status=status)
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return TransientLlmError(f"{host}: cannot connect ({_reason(exc)})", host=host)
        if isinstance(exc, aiohttp.ClientPayloadError):
            return TransientLlmError(f"{host}: response cut short", host=host, status=status)
        if isinstance(exc, aiohttp.ClientError | ConnectionError):
            return TransientLlmError(f"{host}: connection failed ({_reason(exc)})", host=host, status=status)
        if isinstance(exc, TimeoutError):
            if not self._decoder.started and self._first_deadline <= self._total_deadline:
                return TransientLlmError(
                    f"{host}: no first token within {self._first_token_timeout_s:g} s",
                    host=host,
                    status=status,
                )
            return TransientLlmError(
                f"{host}: response not finished within {self._total_timeout_s:g} s", host=host, status=status
            )
        if isinstance(exc, OSError):
            return TransientLlmError(f"{host}: connection failed ({_reason(exc)})", host=host, status=status)
        return None


def _reason(exc: BaseException) -> str:
    """A short, content-free cause: the exception's class and OS error name."""
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    errno_name = ""
    if isinstance(os_error, OSError) and os_error.errno is not None:
        errno_name = errno.errorcode.get(os_error.errno, "")
    return f"{type(exc).__name__}{' ' + errno_name if errno_name else ''}"


async def _read_some(response: aiohttp.ClientResponse, limit: int) -> bytes:
    out = bytearray()
    while len(out) < limit:
        piece = await response.content.read(limit - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)
