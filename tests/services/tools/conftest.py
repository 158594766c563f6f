"""Fixtures for the home-action tests: a real mosquitto broker, MQTT watchers, a running
connection, and registries built from config-shaped tool declarations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from services.tools.actions import build_tools
from services.tools.declarations import parse_tools
from services.tools.home_assistant import HomeAssistant
from services.tools.mqtt import MqttConnection, MqttSettings
from services.tools.registry import ToolRegistry, ToolSpec

WAIT_S = 5.0


@dataclass
class Inbox:
    """What a plain test client subscribed to a filter has received."""

    client: aiomqtt.Client
    messages: list[tuple[str, str, bool]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            text = payload.decode() if isinstance(payload, bytes | bytearray) else str(payload)
            self.messages.append((message.topic.value, text, message.retain))
            self.arrived.set()

    def on(self, topic: str) -> list[str]:
        """The payloads seen on ``topic``, in order."""
        return [payload for t, payload, _ in self.messages if t == topic]

    async def wait_for(self, predicate: Callable[[], bool], within: float = WAIT_S) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()

    async def nothing_but_marker(self) -> list[tuple[str, str, bool]]:
        """Publish a marker and return what arrived before it: a publish that happened before
        this call reached the broker first, so an empty list proves nothing was sent."""
        before = len(self.messages)
        await self.client.publish("test/marker", "marker", qos=1)
        await self.wait_for(lambda: ("test/marker", "marker", False) in self.messages[before:])
        seen = self.messages[before:]
        return seen[: seen.index(("test/marker", "marker", False))]


@contextlib.asynccontextmanager
async def watching(port: int, *filters: str) -> AsyncIterator[Inbox]:
    """A test client on ``port`` subscribed to ``filters`` (and the marker topic)."""
    async with aiomqtt.Client("127.0.0.1", port, timeout=WAIT_S) as client:
        for topic_filter in (*filters, "test/marker"):
            await client.subscribe(topic_filter, qos=1)
        inbox = Inbox(client)
        task = asyncio.create_task(inbox.collect(), name="test-inbox")
        try:
            yield inbox
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def fast_settings(port: int, **overrides: Any) -> MqttSettings:
    """Settings for the broker on ``port`` with a quick reconnect, for tests."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "timeout_s": 2.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.3,
    }
    values.update(overrides)
    return MqttSettings(**values)


@contextlib.asynccontextmanager
async def running(connection: MqttConnection, connected: bool = True) -> AsyncIterator[None]:
    """Run ``connection`` (and wait until it is up, when ``connected``); cancel it after."""
    task = asyncio.create_task(connection.run(), name="mqtt-under-test")
    try:
        if connected:
            async with asyncio.timeout(WAIT_S):
                await connection.wait_connected()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(WAIT_S):
                await task


def registry(
    tools: list[dict[str, Any]],
    *,
    mqtt: MqttConnection | None = None,
    home_assistant: HomeAssistant | None = None,
    extra: tuple[ToolSpec, ...] = (),
) -> ToolRegistry:
    """The registry the daemon would build from these ``[[tools]]`` tables."""
    declarations = parse_tools(
        tools, mqtt=mqtt is not None, home_assistant=home_assistant is not None
    )
    return ToolRegistry(
        [*build_tools(declarations, mqtt=mqtt, home_assistant=home_assistant), *extra]
    )


SET_LIGHT: dict[str, Any] = {
    "name": "set_light",
    "description": "Switch the light of a room on or off.",
    "action": "mqtt_publish",
    "parameters": {
        "type": "object",
        "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
        "required": ["room", "on"],
        "additionalProperties": False,
    },
    "topic": "home/${room}/light/set",
    "payload": {"state": "${on}"},
    "timeout_s": 3,
}
