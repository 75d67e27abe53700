"""A booking service for an agent's HTTP tool, on 127.0.0.1: a real aiohttp server that
checks its bearer token and records what it was asked.

    async with BookingTool(token="t") as booking:     # port 0 unless given
        url = f"http://127.0.0.1:{booking.port}/book"
        booking.requests                              # [(JSON body, Authorization), ...]
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from voicemesh.mesh.localservers import free_port

CONFIRMATION = "BK-7731"


class BookingTool:
    def __init__(self, token: str, port: int = 0) -> None:
        self.token = token
        self.port = port or free_port()
        self.requests: list[tuple[dict[str, Any], str]] = []
        self.delay_s = 0.0  # answer this much later (a slow tool)
        self._runner: web.AppRunner | None = None

    async def _book(self, request: web.Request) -> web.Response:
        body = await request.json()
        authorization = request.headers.get("Authorization", "")
        self.requests.append((body, authorization))
        if authorization != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        await asyncio.sleep(self.delay_s)
        return web.json_response({"booked": True, "confirmation": CONFIRMATION, "phone": body.get("phone")})

    async def __aenter__(self) -> BookingTool:
        app = web.Application()
        app.router.add_post("/book", self._book)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
