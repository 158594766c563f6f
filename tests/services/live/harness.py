"""Helpers for driving a real LiveSession against the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from services.emulator.server import Emulator
from services.live.reconnect import BackoffSettings
from services.live.session import ConnectionStatus, LiveSession, SessionEvents
from services.live.settings import LiveSettings
from services.tools.registry import ToolRegistry, ToolSpec
from tests.conftest import API_KEY

FRAME = b"\x00\x01" * 320  # 20 ms at 16 kHz


class Recorder(SessionEvents):
    """Remembers every callback, and lets a test wait for turns."""

    def __init__(self) -> None:
        self.turns = 0
        self.changed = asyncio.Event()
        self.gate: list[tuple[bool, tuple[tuple[str, str], ...]]] = []
        self.audio_bytes = 0
        self.interruptions = 0
        self.said: list[str] = []
        self.statuses: list[ConnectionStatus] = []
        self.results: list[tuple[str, str, dict[str, Any]]] = []

    def on_connection(self, status: ConnectionStatus) -> None:
        self.statuses.append(status)
        self.changed.set()

    def on_gate(self, shut: bool, calls: tuple[tuple[str, str], ...]) -> None:
        self.gate.append((shut, calls))
        self.changed.set()

    def on_audio(self, pcm: bytes) -> None:
        self.audio_bytes += len(pcm)

    def on_interrupted(self) -> None:
        self.interruptions += 1

    def on_turn_complete(self) -> None:
        self.turns += 1
        self.changed.set()

    def on_transcript(self, source: str, text: str) -> None:
        if source == "model":
            self.said.append(text)

    def on_tool_result(self, call_id: str, name: str, payload: dict[str, Any], ms: float) -> None:
        self.results.append((call_id, name, payload))

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate`` holds, re-checking after every turn or connection change."""
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def wait_turns(self, n: int, within: float = 10.0) -> None:
        """Wait until ``n`` model turns completed."""
        await self.wait_for(lambda: self.turns >= n, within)

    def reply_text(self) -> str:
        return "".join(self.said).strip()


def settings_for(em: Emulator, **overrides: Any) -> LiveSettings:
    """Session settings pointing at ``em`` with quick, test-sized back-off."""
    values: dict[str, Any] = {
        "model": "gemini-live-test",
        "base_url": em.base_url,
        "ca_file": em.settings.cert_out,
        "connect_timeout_s": 5.0,
        "backoff": BackoffSettings(initial_s=0.05, max_s=0.5, jitter=0.5),
    }
    values.update(overrides)
    return LiveSettings(**values)


def tool(name: str, handler: Any, timeout_s: float = 2.0, **schema: Any) -> ToolSpec:
    """A tool whose parameters are ``schema``'s properties (all optional)."""
    return ToolSpec(
        name=name,
        description=f"test tool {name}",
        handler=handler,
        parameters={"type": "object", "properties": schema},
        timeout_s=timeout_s,
    )


def new_session(
    em: Emulator,
    tools: list[ToolSpec],
    recorder: Recorder,
    seed: int = 0,
    api_key: str = API_KEY,
    **overrides: Any,
) -> LiveSession:
    return LiveSession(
        settings_for(em, **overrides),
        ToolRegistry(tools),
        api_key,
        recorder,
        rng=random.Random(seed),
    )


@contextlib.asynccontextmanager
async def running(session: LiveSession) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``session`` in a task for the block; cancel it afterwards."""
    task = asyncio.create_task(session.run(), name="live-session-under-test")
    connected = asyncio.create_task(session.wait_connected())
    try:
        await asyncio.wait({task, connected}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        yield task
    finally:
        connected.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def speak(session: LiveSession, frames: int = 10, pace_s: float = 0.0) -> None:
    """One user utterance: activityStart, audio frames, activityEnd."""
    await session.set_activity(True)
    for _ in range(frames):
        await session.send_audio(FRAME)
        await asyncio.sleep(pace_s)
    await session.set_activity(False)
