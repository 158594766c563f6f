"""Live clients written the way users usually write them, to reproduce the reported failures.

``run_cookbook`` follows the official getting-started example: a mic task streams audio, a
receive task answers tool calls, nothing gates the mic. ``run_seed_fix`` adds the boolean flag
from the public report. Both talk to any Live endpoint through the SDK session they are given;
tests and benchmarks point them at the stand-in to show how (and how often) they are closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.exceptions import ConnectionClosed

Tool = Callable[..., Awaitable[dict[str, Any]]]
MIME = "audio/pcm;rate=16000"


def close_code(exc: BaseException) -> tuple[int | None, str]:
    """The WebSocket close code and reason behind an SDK error, wherever it surfaced."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            code, reason = close_code(inner)
            if code is not None:
                return code, reason
        return None, str(exc)
    if isinstance(exc, errors.APIError):
        return exc.code, str(exc.details or exc.message or "")
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (1006, "")
    return None, repr(exc)


async def _answer(fc: types.FunctionCall, tools: Mapping[str, Tool]) -> types.FunctionResponse:
    result = await tools[fc.name or ""](**(fc.args or {}))
    return types.FunctionResponse(id=fc.id, name=fc.name, response=result)


async def run_cookbook(
    session: AsyncSession, mic: AsyncIterator[bytes], tools: Mapping[str, Tool], turns: int = 1
) -> None:
    """Stream ``mic`` and answer tool calls until ``turns`` model turns completed."""

    async def send_mic() -> None:
        async for pcm in mic:
            await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=MIME))

    async def receive() -> None:
        for _ in range(turns):
            async for response in session.receive():
                if response.tool_call:
                    calls = response.tool_call.function_calls or []
                    answers = [await _answer(fc, tools) for fc in calls]
                    await session.send_tool_response(function_responses=answers)

    async with asyncio.TaskGroup() as group:
        mic_task = group.create_task(send_mic())
        await group.create_task(receive())
        mic_task.cancel()


async def run_seed_fix(
    session: AsyncSession, mic: AsyncIterator[bytes], tools: Mapping[str, Tool], turns: int = 1
) -> None:
    """The public report's fix: a flag set while tool calls run, checked before each send."""
    pending = False

    async def send_mic() -> None:
        async for pcm in mic:
            if pending:
                continue
            await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=MIME))

    async def receive() -> None:
        nonlocal pending
        for _ in range(turns):
            async for response in session.receive():
                if response.tool_call:
                    pending = True
                    try:
                        for fc in response.tool_call.function_calls or []:
                            answer = await _answer(fc, tools)
                            await session.send_tool_response(function_responses=[answer])
                    finally:
                        pending = False

    async with asyncio.TaskGroup() as group:
        mic_task = group.create_task(send_mic())
        await group.create_task(receive())
        mic_task.cancel()
