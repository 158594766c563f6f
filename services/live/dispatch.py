"""Tool dispatch: every call of a ``toolCall`` runs concurrently and is answered exactly once.

The dispatcher only runs tools. A call is answered with its tool's result (or error), shaped
and checked before it leaves — ``{"error": ...}`` whatever raised in validation, the tool,
shaping or the send. A call the service no longer waits for (cancelled, or its connection
replaced) is never answered: the service would close with 1008 "Requested entity was not
found." What the gate makes of an answer is the protocol's business
(:mod:`services.live.protocol`): the dispatcher reports each call's end through ``finished``.

A tool still running when its connection ends runs on: its side effect is done either way, its
result is kept for a resumption that replays the call, and its answer goes out only if the new
connection waits for the same call id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from google.genai import types

from services.live.protocol import Call
from services.live.shaping import Shaped, shape_response
from services.tools.registry import Scheduling, ToolRegistry

log = logging.getLogger(__name__)

SendResponse = Callable[[types.FunctionResponse, int], Awaitable[bool]]
Awaited = Callable[[str], Call | None]
Finished = Callable[[str, bool, dict[str, Any] | None], Awaitable[None]]
ToolResult = Callable[[str, str, dict[str, Any], float], None]


class ToolDispatcher:
    """Runs the calls of ``toolCall`` messages and answers each once."""

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        awaited: Awaited,
        send: SendResponse,
        finished: Finished,
        on_result: ToolResult,
        cap_chars: int,
        max_bytes: int,
    ) -> None:
        self._registry = registry
        # Asked just before each send, with no await in between: is the call still owed?
        self._awaited = awaited
        self._send = send
        self._finished = finished
        self._on_result = on_result
        self._cap_chars = cap_chars
        self._max_bytes = max_bytes
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        """How many calls are still running."""
        return len(self._tasks)

    def start(self, calls: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Start a task per (id, name, args), unless that call's tool is still running from
        before a resumption: then its answer is this call's."""
        for call_id, name, args in calls:
            if call_id in self._tasks:
                log.info(
                    "tool call %s (%s) is still running: its answer goes to the replay",
                    name,
                    call_id,
                )
                continue
            task = asyncio.create_task(
                self._run(call_id, name, args), name=f"tool:{name}:{call_id}"
            )
            self._tasks[call_id] = task

    def answer_again(self, call_id: str, name: str, payload: dict[str, Any]) -> None:
        """Answer a replayed call with the result its tool gave the first time."""
        task = asyncio.create_task(
            self._run(call_id, name, {}, payload), name=f"tool-again:{name}:{call_id}"
        )
        self._tasks[call_id] = task

    def stop(self, ids: Sequence[str]) -> None:
        """Stop these calls' tools (cancelled, or abandoned); none of them is answered."""
        for call_id in ids:
            task = self._tasks.pop(call_id, None)
            if task is not None:
                task.cancel()

    async def stop_all(self) -> None:
        """Cancel every running call (the connection is gone) and wait for them to end."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self,
        call_id: str,
        name: str,
        args: Mapping[str, Any],
        first: dict[str, Any] | None = None,
    ) -> None:
        """Run the tool (or take its ``first`` result), answer, and report the end."""
        started = time.monotonic()
        # None: stopped, nothing is owed; else whether the call needs nothing more.
        settled: bool | None = False
        payload: dict[str, Any] | None = None
        try:
            if first is None:
                shaped = await self._outcome(name, args)
                if shaped.truncated:
                    log.warning("tool %s response truncated (%s)", name, shaped.note)
            else:
                shaped = shape_response(first, self._cap_chars)
            payload = shaped.payload
            settled = await self._answer_surely(call_id, name, shaped, started)
        except asyncio.CancelledError:
            settled = None
            raise
        finally:
            self._tasks.pop(call_id, None)
            if settled is not None:
                await self._finished(call_id, settled, payload)

    async def _outcome(self, name: str, args: Mapping[str, Any]) -> Shaped:
        """The shaped result, or an error payload whatever raised on the way."""
        try:
            outcome = await self._registry.call(name, args)
            return shape_response(outcome.payload, self._cap_chars)
        except Exception as exc:
            log.error("tool %s failed before it had a result: %r", name, exc, exc_info=True)
            return self._error(f"{name} failed: {type(exc).__name__}")

    def _error(self, message: str) -> Shaped:
        return shape_response({"error": message}, self._cap_chars)

    async def _answer_surely(self, call_id: str, name: str, shaped: Shaped, started: float) -> bool:
        """Answer with ``shaped``, or with a plain error if that raised. True once the call
        needs nothing more (answered, cancelled, or its connection gone)."""
        try:
            await self._answer(call_id, name, shaped, started)
        except Exception as exc:
            log.error("tool %s response could not be sent: %r", name, exc, exc_info=True)
            try:
                await self._answer(call_id, name, self._error(f"{name} failed"), started)
            except Exception:
                log.exception("tool %s error response could not be sent either", name)
                return False
        return True

    async def _answer(self, call_id: str, name: str, shaped: Shaped, started: float) -> None:
        # Checked and sent with no await in between: a cancellation cannot slip past the check.
        call = self._awaited(call_id)
        if call is None:
            # Expected, not a fault: a cancellation or a lost connection (the result is kept
            # for a replay of this id).
            log.info(
                "not answering %s (%s): the call was cancelled or its connection ended; "
                "an answer would be closed with 1008 'Requested entity was not found.'",
                name,
                call_id,
            )
            return
        if shaped.size > self._max_bytes:
            log.error(
                "tool %s response is %d B, over the %d B limit", name, shaped.size, self._max_bytes
            )
            shaped = shape_response(
                {"error": f"{name} produced a response too large to send"}, self._cap_chars
            )
        scheduling = None
        if not call.blocking:
            spec = self._registry.spec(name)
            chosen = (spec.scheduling if spec else None) or Scheduling.WHEN_IDLE
            scheduling = types.FunctionResponseScheduling(chosen.value.upper())
        response = types.FunctionResponse(
            id=call_id, name=call.name, response=shaped.payload, scheduling=scheduling
        )
        sent = await self._send(response, shaped.size)
        elapsed_ms = 1000 * (time.monotonic() - started)
        if sent:
            self._on_result(call_id, name, shaped.payload, elapsed_ms)
