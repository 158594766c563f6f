"""Run the stand-in on its own event loop in a background thread.

A client under test and the stand-in then never share a loop: the stand-in judges each frame's
timing (the grace window after a ``toolCall``) without being held up by the client's work,
as the real service is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from services.emulator.server import Emulator, EmulatorSettings


@contextlib.asynccontextmanager
async def background_emulator(
    settings: EmulatorSettings, start_timeout_s: float = 10.0
) -> AsyncIterator[Emulator]:
    """Start an :class:`Emulator` in a thread of its own; stop it when the block ends."""
    emulator = Emulator(settings)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []

    async def serve() -> None:
        stop = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        stop_box.append(stop)
        try:
            async with emulator:
                ready.set()
                await stop.wait()
        except Exception as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(
        target=asyncio.run, args=(serve(),), name="live-stand-in", daemon=True
    )
    thread.start()
    started = await asyncio.to_thread(ready.wait, start_timeout_s)
    if failure:
        raise failure[0]
    if not started:
        raise TimeoutError("the stand-in did not start in time")
    try:
        yield emulator
    finally:
        loop_box[0].call_soon_threadsafe(stop_box[0].set)
        await asyncio.to_thread(thread.join, start_timeout_s)
