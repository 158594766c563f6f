"""End to end: the model asks for a light, MQTT carries it, the light's state comes back.

The whole daemon runs against the stand-in and a real mosquitto broker; a fake light (a plain
MQTT client) answers each command with its new state, and the model must receive that
confirmed state in its toolResponse.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
import pytest

from services.emulator import frames
from services.emulator.server import LiveConnection
from services.testbed.mosquitto import Mosquitto
from tests.daemon.conftest import RigFactory
from tests.services.tools.conftest import WAIT_S, watching

SET_LIGHT = {"name": "set_light", "args": {"room": "kitchen", "on": True}}
SCENARIO = {
    "turns": [
        {
            "heard": "Turn on the kitchen light.",
            "tool_calls": [SET_LIGHT],
            "reply": "The kitchen light is on.",
        }
    ]
}
TOOLS = [
    {
        "name": "set_light",
        "description": "Switch the light of a room on or off; answers with its new state.",
        "action": "mqtt_publish",
        "parameters": {
            "type": "object",
            "properties": {"room": {"enum": ["kitchen", "hall"]}, "on": {"type": "boolean"}},
            "required": ["room", "on"],
        },
        "topic": "home/${room}/light/set",
        "payload": {"state": "${on}"},
        "state_topic": "home/${room}/light/state",
        "timeout_s": 4,
    }
]


@pytest.fixture
def tool_responses(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every functionResponse the stand-in receives (its trace keeps only ids and names)."""
    received: list[dict[str, Any]] = []
    original = LiveConnection._on_tool_response

    async def recording(self: LiveConnection, frame: frames.ClientFrame) -> bool:
        responses = frame.body.get("functionResponses") or []
        received.extend(responses if isinstance(responses, list) else [responses])
        return await original(self, frame)

    monkeypatch.setattr(LiveConnection, "_on_tool_response", recording)
    return received


async def fake_light(port: int, ready: asyncio.Event, commands: list[Any]) -> None:
    """A light that reports its state after each command, as Zigbee2MQTT devices do."""
    async with aiomqtt.Client("127.0.0.1", port, timeout=WAIT_S) as client:
        await client.subscribe("home/+/light/set", qos=1)
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            command = json.loads(message.payload)
            commands.append((message.topic.value, command))
            room = message.topic.value.split("/")[1]
            state = {"state": "ON" if command["state"] else "OFF"}
            # QoS 0 returns at once: aiomqtt's wait for a PUBACK can swallow a cancellation.
            await client.publish(f"home/{room}/light/state", json.dumps(state), qos=0)


async def test_the_model_switches_a_light_over_mqtt_and_hears_its_confirmed_state(
    rig_factory: RigFactory,
    request_speech: bytes,
    broker: Mosquitto,
    tool_responses: list[dict[str, Any]],
) -> None:
    commands: list[Any] = []
    ready = asyncio.Event()
    mqtt = {"host": "127.0.0.1", "port": broker.port, "node_id": "e2e"}
    async with (
        watching(broker.port, "pi-live-voice/e2e/#") as device,
        asyncio.TaskGroup() as group,
    ):
        light = group.create_task(fake_light(broker.port, ready, commands), name="fake-light")
        async with asyncio.timeout(WAIT_S):
            await ready.wait()
        async with rig_factory(SCENARIO, mode="always", mqtt=mqtt, tools=TOOLS) as rig:
            assert rig.daemon.mqtt is not None
            async with asyncio.timeout(WAIT_S):
                await rig.daemon.mqtt.wait_connected()
            rig.mic.say(request_speech)
            await rig.wait_for(
                lambda: bool(rig.kinds("tool-result")) and rig.kinds("state")[-1:] == ["idle"]
            )
        await device.wait_for(
            lambda: device.on("pi-live-voice/e2e/availability")[-1:] == ["offline"]
        )
        light.cancel()

    assert commands == [("home/kitchen/light/set", {"state": True})]
    trace = rig.emulator.trace
    assert trace.select("violation") == []
    [call] = trace.select("out", kind="toolCall")
    [response] = trace.select("in", kind="toolResponse")
    assert response["names"] == ["set_light"]
    assert call["t"] < response["t"]
    [answer] = tool_responses
    assert answer["name"] == "set_light"
    assert answer["response"] == {
        "output": {"published": "home/kitchen/light/set", "confirmed_state": {"state": "ON"}}
    }
    # The device showed the call in Home Assistant, and went offline when it stopped.
    states = device.on("pi-live-voice/e2e/state")
    assert "tool-pending" in states
    assert states[-1] == "idle"
    assert device.on("pi-live-voice/e2e/availability")[:1] == ["online"]
    assert "tool-pending: set_light" in device.on("pi-live-voice/e2e/status")
    # And whether the microphone's audio was going to the service.
    assert device.on("pi-live-voice/e2e/microphone") == ["local", "sending", "local"]
