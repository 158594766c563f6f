"""Tool dispatch: every call of a ``toolCall`` runs concurrently and is answered exactly once.

A call is answered with its tool's result (or error), shaped and checked before it leaves; a
call the service cancelled, or one whose connection was replaced, is never answered — the
service would close with 1008 "Requested entity was not found." The gate opens in a
``finally`` once the last call of the message is resolved, and a call is resolved only once
it was answered (its result, or ``{"error": ...}`` whatever raised in validation, the tool,
shaping or the send) or cancelled. A call that cannot be answered at all keeps the gate shut
and asks the session to replace the connection, which drops the call on the service's side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from google.genai import types

from services.live.gate import InputGate
from services.live.shaping import Shaped, shape_response
from services.tools.registry import Scheduling, ToolRegistry

log = logging.getLogger(__name__)

SendResponse = Callable[[types.FunctionResponse, int], Awaitable[bool]]
GateOpened = Callable[[], Awaitable[None]]
ToolResult = Callable[[str, str, dict[str, Any], float], None]
Unanswerable = Callable[[str], None]


class ToolDispatcher:
    """Runs the calls of ``toolCall`` messages and resolves them on the gate."""

    def __init__(
        self,
        registry: ToolRegistry,
        gate: InputGate,
        *,
        send: SendResponse,
        gate_opened: GateOpened,
        on_result: ToolResult,
        cap_chars: int,
        max_bytes: int,
        unanswerable: Unanswerable,
        background_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._registry = registry
        self._gate = gate
        self._send = send
        self._gate_opened = gate_opened
        self._on_result = on_result
        self._cap_chars = cap_chars
        self._max_bytes = max_bytes
        # Told whenever a non-blocking call ends: the set in gate.running changed.
        self._background_changed = background_changed
        self._unanswerable = unanswerable
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        """How many calls are still running."""
        return len(self._tasks)

    def start(self, calls: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Start a task per (id, name, args); the gate must already be shut for them."""
        for call_id, name, args in calls:
            task = asyncio.create_task(
                self._run(call_id, name, args), name=f"tool:{name}:{call_id}"
            )
            self._tasks[call_id] = task

    def cancel(self, ids: list[str]) -> bool:
        """The service cancelled these calls: stop them, send nothing. True if the gate opened."""
        for call_id in ids:
            task = self._tasks.pop(call_id, None)
            if task is not None:
                task.cancel()
        log.info("tool calls cancelled by the service: %s", ", ".join(ids))
        background = any(call_id in self._gate.running for call_id in ids)
        opened = self._gate.resolve(ids)
        if background:
            self._background_changed()
        return opened

    async def stop_all(self) -> None:
        """Cancel every running call (the connection is gone) and wait for them to end."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, call_id: str, name: str, args: Mapping[str, Any]) -> None:
        started = time.monotonic()
        settled = False
        try:
            shaped = await self._outcome(name, args)
            if shaped.truncated:
                log.warning("tool %s response truncated (%s)", name, shaped.note)
            settled = await self._answer_surely(call_id, name, shaped, started)
        except asyncio.CancelledError:
            # Cancelled by the service, or its connection is gone: nothing is owed.
            settled = True
            raise
        finally:
            self._tasks.pop(call_id, None)
            background = call_id in self._gate.running
            if not settled:
                log.error(
                    "tool %s (%s) could not be answered: the connection is replaced to drop it "
                    "(a blocking call keeps input gated until then)",
                    name,
                    call_id,
                )
                self._unanswerable(call_id)
            elif self._gate.resolve([call_id]):
                await self._gate_opened()
            if background:
                self._background_changed()

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
        pending_name = self._gate.name_of(call_id)
        if pending_name is None:
            log.warning(
                "not answering %s (%s): the call was cancelled or its connection replaced; "
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
        if call_id in self._gate.running:
            spec = self._registry.spec(name)
            chosen = (spec.scheduling if spec else None) or Scheduling.WHEN_IDLE
            scheduling = types.FunctionResponseScheduling(chosen.value.upper())
        response = types.FunctionResponse(
            id=call_id, name=pending_name, response=shaped.payload, scheduling=scheduling
        )
        sent = await self._send(response, shaped.size)
        elapsed_ms = 1000 * (time.monotonic() - started)
        if sent:
            self._on_result(call_id, name, shaped.payload, elapsed_ms)
