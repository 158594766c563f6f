"""The device itself in Home Assistant, over MQTT: availability, state, and discovery.

The connection's last will marks the device ``offline`` (retained) when it vanishes; every
connection announces ``online``. The daemon's state (idle, listening, thinking, speaking,
tool-pending, reconnecting, error) and its one-line status go to retained topics, and MQTT
discovery messages make Home Assistant create the matching sensors on its own. Everything is
republished after a reconnect, so a broker restarted without persistence learns it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiomqtt

from services.tools.mqtt import MqttConnection, MqttUnavailable

log = logging.getLogger(__name__)

BASE_TOPIC = "pi-live-voice"
# Home Assistant keeps at most 255 characters of a sensor's state.
MAX_STATE_CHARS = 255


@dataclass(frozen=True)
class HaDeviceSettings:
    """How the device appears: its node id (letters, digits, ``_`` and ``-``) and discovery."""

    node_id: str
    discovery: bool = True
    discovery_prefix: str = "homeassistant"


class HaDevice:
    """Announces the device on ``connection``; build it before the connection runs."""

    def __init__(self, settings: HaDeviceSettings, connection: MqttConnection) -> None:
        self.settings = settings
        self._connection = connection
        base = f"{BASE_TOPIC}/{settings.node_id}"
        self.availability_topic = f"{base}/availability"
        self.state_topic = f"{base}/state"
        self.status_topic = f"{base}/status"
        connection.will = aiomqtt.Will(self.availability_topic, "offline", qos=1, retain=True)
        if settings.discovery:
            for topic, config in self.discovery_messages():
                connection.keep_published(topic, json.dumps(config, separators=(",", ":")))
        connection.keep_published(self.availability_topic, "online")

    def discovery_messages(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) of each entity: the state sensor and the status sensor."""
        node = self.settings.node_id
        device = {
            "identifiers": [f"pi_live_voice_{node}"],
            "name": f"Voice device {node}",
            "manufacturer": "pi-live-voice",
            "model": "pi-live-voice",
        }
        common = {
            "availability_topic": self.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        prefix = self.settings.discovery_prefix
        return [
            (
                f"{prefix}/sensor/{node}/state/config",
                {
                    **common,
                    "name": "State",
                    "unique_id": f"{node}_state",
                    "state_topic": self.state_topic,
                    "icon": "mdi:account-voice",
                },
            ),
            (
                f"{prefix}/sensor/{node}/status/config",
                {
                    **common,
                    "name": "Status",
                    "unique_id": f"{node}_status",
                    "state_topic": self.status_topic,
                    "entity_category": "diagnostic",
                    "icon": "mdi:information-outline",
                },
            ),
        ]

    def show_state(self, state: str) -> None:
        """Publish the daemon's state (retained); never waits."""
        self._connection.keep_published(self.state_topic, state)

    def show_status(self, text: str) -> None:
        """Publish the daemon's one-line status (retained); never waits."""
        self._connection.keep_published(self.status_topic, text[:MAX_STATE_CHARS])

    async def goodbye(self, timeout_s: float = 1.0) -> None:
        """Mark the device ``offline`` before a clean disconnect (which fires no last will)."""
        self._connection.keep_published(self.availability_topic, "offline")
        try:
            async with asyncio.timeout(timeout_s):
                await self._connection.publish(
                    self.availability_topic, "offline", qos=1, retain=True
                )
        except (MqttUnavailable, TimeoutError):
            log.info("could not mark the device offline; the broker's last will will do it")
