"""Async-iterator helpers of the servicer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from voicemesh.mesh.aio import cancel_and_wait

T = TypeVar("T")


async def until_stopped(items: AsyncIterator[T], stop: asyncio.Event) -> AsyncIterator[T]:
    """The items of `items` until `stop` is set; a stop interrupts a pending item (the
    backend's iteration is cancelled) and always wins over an item that is ready."""
    waiter = asyncio.ensure_future(stop.wait())
    step: asyncio.Future[tuple[bool, T | None]] | None = None
    try:
        while not stop.is_set():
            step = asyncio.ensure_future(_next(items))
            await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                return
            more, item = step.result()
            step = None
            if not more:
                return
            yield item  # type: ignore[misc]
    finally:
        try:
            await cancel_and_wait(step, waiter)  # type: ignore[arg-type]
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()


async def _next(items: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await anext(items)
    except StopAsyncIteration:
        return False, None
