"""The device in Home Assistant: discovery, availability with a last will, and its state."""

from __future__ import annotations

import datetime as dt
import json
import socket

from services.testbed.mosquitto import Mosquitto
from services.tools.declarations import parse_mqtt
from services.tools.ha_device import HaDevice
from services.tools.mqtt import MqttConnection
from tests.services.tools.conftest import fast_settings, running, watching

AVAILABILITY = "pi-live-voice/den/availability"
STATE = "pi-live-voice/den/state"
STATUS = "pi-live-voice/den/status"
USAGE = "pi-live-voice/den/usage"


def test_the_device_is_on_by_default_when_mqtt_is_configured() -> None:
    _, device = parse_mqtt({"host": "broker.lan", "node_id": "den"}, {})
    assert device is not None
    assert (device.node_id, device.discovery, device.discovery_prefix) == (
        "den",
        True,
        "homeassistant",
    )
    _, quiet = parse_mqtt({"host": "broker.lan", "publish_state": False}, {})
    assert quiet is None


async def test_discovery_availability_and_state_appear_on_the_broker(broker: Mosquitto) -> None:
    _, settings = parse_mqtt({"host": "127.0.0.1", "node_id": "den"}, {})
    assert settings is not None
    connection = MqttConnection(fast_settings(broker.port))
    device = HaDevice(settings, connection)
    assert connection.will is not None
    assert (connection.will.topic, connection.will.payload, connection.will.retain) == (
        AVAILABILITY,
        "offline",
        True,
    )
    device.show_state("idle")
    async with (
        running(connection),
        watching(broker.port, "homeassistant/#", "pi-live-voice/#") as inbox,
    ):
        await inbox.wait_for(lambda: inbox.on(AVAILABILITY) == ["online"] and bool(inbox.on(STATE)))
        device.show_state("listening")
        device.show_status("tool-pending: set_light")
        await inbox.wait_for(lambda: inbox.on(STATE)[-1:] == ["listening"])
        await inbox.wait_for(lambda: inbox.on(STATUS) == ["tool-pending: set_light"])

        # A connection that drops without a goodbye: the broker publishes the last will,
        # and the reconnect announces the device again.
        client = connection.require()
        raw = client._client.socket()
        assert isinstance(raw, socket.socket)
        raw.shutdown(socket.SHUT_RDWR)
        await inbox.wait_for(lambda: inbox.on(AVAILABILITY) == ["online", "offline", "online"])
        await inbox.wait_for(lambda: inbox.on(STATE)[-1:] == ["listening"] and connection.connected)

        # The last state and usage are set just before the goodbye: they still go out, and
        # before "offline".
        device.show_state("idle")
        device.show_usage(dt.date(2026, 12, 4), 1234, None)
        await device.goodbye()
        await inbox.wait_for(lambda: inbox.on(AVAILABILITY)[-1:] == ["offline"])
    order = [(topic, payload) for topic, payload, _ in inbox.messages]
    offline = len(order) - 1 - order[::-1].index((AVAILABILITY, "offline"))
    assert (STATE, "idle") in order[:offline]
    assert json.loads(inbox.on(USAGE)[-1])["tokens_today"] == 1234

    config = json.loads(inbox.on("homeassistant/sensor/den/state/config")[0])
    assert config["state_topic"] == STATE
    assert config["availability_topic"] == AVAILABILITY
    assert config["unique_id"] == "den_state"
    assert config["device"]["identifiers"] == ["pi_live_voice_den"]
    status = json.loads(inbox.on("homeassistant/sensor/den/status/config")[0])
    assert status["state_topic"] == STATUS
    microphone = json.loads(inbox.on("homeassistant/sensor/den/microphone/config")[0])
    assert microphone["state_topic"] == "pi-live-voice/den/microphone"
    assert inbox.on(STATE)[0] == "idle"
    assert connection.connects == 2


async def test_discovery_can_be_turned_off(broker: Mosquitto) -> None:
    _, settings = parse_mqtt({"host": "127.0.0.1", "node_id": "den", "discovery": False}, {})
    assert settings is not None
    connection = MqttConnection(fast_settings(broker.port))
    HaDevice(settings, connection)
    async with running(connection), watching(broker.port, "#") as inbox:
        await inbox.wait_for(lambda: inbox.on(AVAILABILITY) == ["online"])
        # Discovery messages would have gone out before "online".
        await inbox.nothing_but_marker()
    assert not [t for t, _, _ in inbox.messages if t.startswith("homeassistant")]
