"""MQTT tools declared in config, against a real mosquitto broker on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from services.testbed.mosquitto import PASSWORD, USERNAME, Mosquitto, make_certificate
from services.tools.actions import RateLimit
from services.tools.declarations import parse_mqtt
from services.tools.mqtt import MqttConnection, MqttSettings
from services.tools.registry import ToolSpec
from tests.services.tools.conftest import (
    SET_LIGHT,
    WAIT_S,
    fast_settings,
    registry,
    running,
    watching,
)

CONFIRMED_LIGHT = {**SET_LIGHT, "state_topic": "home/${room}/light/state", "state_timeout_s": 1}


async def fake_light(port: int, ready: asyncio.Event) -> None:
    """A light that reports its new state on .../state after every command on .../set."""
    async with aiomqtt.Client("127.0.0.1", port, timeout=WAIT_S) as client:
        await client.subscribe("home/+/light/set", qos=1)
        ready.set()
        async for message in client.messages:
            room = message.topic.value.split("/")[1]
            assert isinstance(message.payload, bytes)
            on = json.loads(message.payload)["state"]
            state = json.dumps({"state": "ON" if on else "OFF", "brightness": 254})
            # QoS 0 returns at once: aiomqtt's wait for a PUBACK can swallow a cancellation.
            await client.publish(f"home/{room}/light/state", state, qos=0, retain=True)


async def seen(connection: MqttConnection, topic: str) -> None:
    """Wait (bounded) until ``connection`` has a value for ``topic``."""
    with connection.expect(topic) as arrival:
        if connection.last(topic) is None:
            async with asyncio.timeout(WAIT_S):
                await arrival


async def test_a_call_publishes_the_templated_payload(broker: Mosquitto) -> None:
    tasmota = {
        "name": "set_plug",
        "description": "Switch a plug.",
        "action": "mqtt_publish",
        "parameters": {
            "type": "object",
            "properties": {"plug": {"type": "string"}, "power": {"enum": ["ON", "OFF"]}},
            "required": ["plug", "power"],
        },
        "topic": "cmnd/${plug}/POWER",
        "payload": "${power}",
        "qos": 0,
        "retain": True,
    }
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([SET_LIGHT, tasmota], mqtt=connection)
    async with running(connection), watching(broker.port, "home/#", "cmnd/#") as inbox:
        light = await tools.call("set_light", {"room": "kitchen", "on": True})
        plug = await tools.call("set_plug", {"plug": "desk_fan", "power": "OFF"})
        await inbox.wait_for(lambda: len(inbox.messages) == 2)
    assert light.payload == {"output": {"published": "home/kitchen/light/set"}}
    assert plug.ok
    assert inbox.messages == [
        ("home/kitchen/light/set", '{"state":true}', False),
        ("cmnd/desk_fan/POWER", "OFF", False),
    ]


async def test_a_confirmed_state_tool_returns_the_state_the_device_publishes(
    broker: Mosquitto,
) -> None:
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([CONFIRMED_LIGHT], mqtt=connection)
    ready = asyncio.Event()
    async with running(connection), asyncio.TaskGroup() as group:
        light = group.create_task(fake_light(broker.port, ready))
        async with asyncio.timeout(WAIT_S):
            await ready.wait()
        outcome = await tools.call("set_light", {"room": "hall", "on": True})
        light.cancel()
    assert outcome.payload == {
        "output": {
            "published": "home/hall/light/set",
            "confirmed_state": {"state": "ON", "brightness": 254},
        }
    }


async def test_no_confirmation_is_a_clear_error_within_the_state_time_out(
    broker: Mosquitto,
) -> None:
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([CONFIRMED_LIGHT], mqtt=connection)
    async with running(connection):
        started = time.monotonic()
        outcome = await tools.call("set_light", {"room": "hall", "on": True})
        elapsed = time.monotonic() - started
    assert not outcome.ok
    assert "did not confirm on home/hall/light/state within 1 s" in outcome.payload["error"]
    assert 0.9 < elapsed < 2.5


async def test_a_state_tool_returns_the_last_retained_value(broker: Mosquitto) -> None:
    sensor = {
        "name": "temperature",
        "description": "The temperature in a room.",
        "action": "mqtt_state",
        "parameters": {
            "type": "object",
            "properties": {"room": {"enum": ["kitchen", "cellar"]}},
            "required": ["room"],
        },
        "topic": "sensors/${room}/temperature",
    }
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish("sensors/kitchen/temperature", "21.5", qos=1, retain=True)
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([sensor], mqtt=connection)
    async with running(connection), watching(broker.port, "sensors/#") as inbox:
        await seen(connection, "sensors/kitchen/temperature")
        kitchen = await tools.call("temperature", {"room": "kitchen"})
        cellar = await tools.call("temperature", {"room": "cellar"})
        await inbox.client.publish("sensors/cellar/temperature", '{"celsius": 12}', qos=1)
        await seen(connection, "sensors/cellar/temperature")
        cellar_later = await tools.call("temperature", {"room": "cellar"})
    assert kitchen.ok
    assert kitchen.payload["output"]["value"] == 21.5
    assert "nothing has been published on sensors/cellar/temperature" in cellar.payload["error"]
    assert cellar_later.payload["output"]["value"] == {"celsius": 12}


INJECTIONS = [
    ({"room": "../secret", "on": True}, "may not contain '/'"),
    ({"room": "..", "on": True}, "may not contain '..'"),
    ({"room": "#", "on": True}, "may not contain '#'"),
    ({"room": "kitchen/+", "on": True}, "may not contain '/'"),
    ({"room": "+", "on": True}, "may not contain '+'"),
    ({"room": "", "on": True}, "is empty"),
    ({"room": "kit\x00chen", "on": True}, "NUL"),
    ({"room": "$SYS", "on": True}, "start with '$'"),
    ({"room": "kitchen", "on": "yes"}, "invalid arguments: on: 'yes' is not of type 'boolean'"),
    ({"room": "kitchen"}, "invalid arguments: arguments: 'on' is a required property"),
    ({"room": "kitchen", "on": True, "topic": "x"}, "invalid arguments"),
]


@pytest.mark.parametrize(("args", "why"), INJECTIONS)
async def test_injection_and_schema_violations_are_refused_with_nothing_published(
    broker: Mosquitto, args: dict[str, Any], why: str
) -> None:
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([SET_LIGHT], mqtt=connection)
    async with running(connection), watching(broker.port, "#") as inbox:
        outcome = await tools.call("set_light", args)
        assert await inbox.nothing_but_marker() == []
    assert not outcome.ok
    assert why in outcome.payload["error"]


async def test_a_confirm_tool_refuses_until_called_with_confirmed_true(broker: Mosquitto) -> None:
    garage = {
        "name": "open_garage",
        "description": "Open the garage door.",
        "action": "mqtt_publish",
        "topic": "garage/door/set",
        "payload": "OPEN",
        "confirm": True,
    }
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([garage], mqtt=connection)
    spec = tools.spec("open_garage")
    assert spec is not None
    assert spec.parameters["properties"]["confirmed"]["type"] == "boolean"
    assert "confirm aloud" in spec.description
    async with running(connection), watching(broker.port, "garage/#") as inbox:
        asked = await tools.call("open_garage", {})
        declined = await tools.call("open_garage", {"confirmed": False})
        assert await inbox.nothing_but_marker() == []
        done = await tools.call("open_garage", {"confirmed": True})
        await inbox.wait_for(lambda: inbox.on("garage/door/set") == ["OPEN"])
    for refusal in (asked, declined):
        assert refusal.payload["output"]["done"] is False
        assert "confirmed=true" in refusal.payload["output"]["refused"]
    assert done.payload == {"output": {"published": "garage/door/set"}}


async def test_a_rate_limited_tool_refuses_past_its_limit(broker: Mosquitto) -> None:
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([{**SET_LIGHT, "rate_limit": 2}], mqtt=connection)
    async with running(connection), watching(broker.port, "home/#") as inbox:
        outcomes = [
            await tools.call("set_light", {"room": "hall", "on": on}) for on in (True, False, True)
        ]
        assert len(await inbox.nothing_but_marker()) == 2
    assert [o.ok for o in outcomes] == [True, True, False]
    assert "2 times a minute" in outcomes[2].payload["error"]


def test_the_rate_limit_window_slides() -> None:
    now = [0.0]
    limit = RateLimit(2, clock=lambda: now[0])
    assert limit.take() is None
    now[0] = 30
    assert limit.take() is None
    assert limit.take() == pytest.approx(30)
    now[0] = 60
    assert limit.take() is None
    assert limit.take() == pytest.approx(30)


async def test_a_stopped_broker_fails_calls_fast_and_a_restarted_one_is_used_again(
    broker: Mosquitto,
) -> None:
    async def local(args: dict[str, Any]) -> str:
        return "still here"

    connection = MqttConnection(fast_settings(broker.port))
    tools = registry(
        [SET_LIGHT, CONFIRMED_LIGHT | {"name": "confirm_light", "state_timeout_s": 2.5}],
        mqtt=connection,
        extra=(ToolSpec("local", "a tool that needs no broker", local),),
    )
    async with running(connection):
        assert (await tools.call("set_light", {"room": "hall", "on": True})).ok
        # A call waiting for its confirmation when the broker goes away ends at once.
        waiting = asyncio.create_task(tools.call("confirm_light", {"room": "hall", "on": True}))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.to_thread(broker.stop)
        cut = await waiting
        cut_after = time.monotonic() - started
        started = time.monotonic()
        down = await tools.call("set_light", {"room": "hall", "on": False})
        down_after = time.monotonic() - started
        assert (await tools.call("local", {})).payload == {"output": "still here"}

        await asyncio.to_thread(broker.start)
        async with asyncio.timeout(WAIT_S):
            await connection.wait_connected()
        async with watching(broker.port, "home/#") as inbox:
            again = await tools.call("set_light", {"room": "hall", "on": True})
            await inbox.wait_for(lambda: inbox.on("home/hall/light/set") == ['{"state":true}'])
    assert "lost" in cut.payload["error"]
    assert cut_after < 1.0
    assert not down.ok
    assert "no connection to the MQTT broker at 127.0.0.1" in down.payload["error"]
    assert down_after < 0.5
    assert again.ok
    assert connection.connects == 2


def _tls_settings(
    broker: Mosquitto, tmp_path: Path, password: str, ca_file: Path | None = None
) -> MqttSettings:
    """Settings as ``[mqtt]`` gives them, the password from a credential; quick reconnects."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "mqtt-password").write_text(password + "\n")
    settings, _ = parse_mqtt(
        {
            "host": "127.0.0.1",
            "port": broker.tls_port,
            "ca_file": str(ca_file or broker.ca_file),
            "username": USERNAME,
        },
        {"CREDENTIALS_DIRECTORY": str(credentials)},
    )
    return replace(settings, timeout_s=2.0, reconnect_initial_s=0.05, reconnect_max_s=0.3)


async def test_tls_and_a_password_from_the_credentials_directory(
    broker: Mosquitto, tmp_path: Path
) -> None:
    settings = _tls_settings(broker, tmp_path, PASSWORD)
    assert settings.tls
    assert settings.password == PASSWORD
    assert PASSWORD not in repr(settings)
    connection = MqttConnection(settings)
    tools = registry([SET_LIGHT], mqtt=connection)
    async with running(connection), watching(broker.port, "home/#") as inbox:
        outcome = await tools.call("set_light", {"room": "attic", "on": True})
        await inbox.wait_for(lambda: bool(inbox.on("home/attic/light/set")))
    assert outcome.ok


@pytest.mark.parametrize("failure", ["wrong password", "untrusted certificate"])
async def test_a_refused_login_or_certificate_is_a_clear_error(
    broker: Mosquitto, tmp_path: Path, failure: str
) -> None:
    other_ca, _ = make_certificate(tmp_path, "other")
    settings = _tls_settings(
        broker,
        tmp_path,
        "wrong" if failure == "wrong password" else PASSWORD,
        other_ca if failure == "untrusted certificate" else None,
    )
    connection = MqttConnection(settings)
    tools = registry([SET_LIGHT], mqtt=connection)
    async with running(connection, connected=False):
        for _ in range(250):  # up to 5 s for the first attempt to fail
            if connection.last_error != "not connected yet":
                break
            await asyncio.sleep(0.02)
        started = time.monotonic()
        outcome = await tools.call("set_light", {"room": "attic", "on": True})
        assert time.monotonic() - started < 0.5
    error = outcome.payload["error"]
    if failure == "wrong password":
        assert "refused the username or password" in error
    else:
        assert "TLS failed" in error
        assert "CERTIFICATE_VERIFY_FAILED" in error
    assert PASSWORD not in error
