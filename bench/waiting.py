"""Waiting on state that other threads or processes own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(done: Callable[[], bool], *, every: float, within: float) -> None:
    """Return once ``done()`` holds, checking every ``every`` seconds; TimeoutError after
    ``within``.

    For state no event of this loop announces — a stand-in's trace written by its thread, a
    child process's files, a datagram socket read by a thread — so it is polled."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - nothing on this loop signals the change
            await asyncio.sleep(every)
