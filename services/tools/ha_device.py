"""The device itself in Home Assistant, over MQTT: availability, state, and discovery.

The connection's last will marks the device ``offline`` (retained) when it vanishes; every
connection announces ``online``. The daemon's state (idle, listening, thinking, speaking,
tool-pending, reconnecting, error), its one-line status and where the microphone's audio goes
(``sending`` to the service, ``local``: heard here only, ``muted``) go to retained topics, and MQTT
discovery messages make Home Assistant create the matching sensors on its own. So does the
day's usage: tokens, and with prices the estimated cost, as sensors that start again each
day (``last_reset`` is the day's start, so Home Assistant's statistics sum the days). Everything
is republished after a reconnect, so a broker restarted without persistence learns it again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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

    def __init__(
        self, settings: HaDeviceSettings, connection: MqttConnection, *, priced: bool = False
    ) -> None:
        self.settings = settings
        self._connection = connection
        self._priced = priced  # a cost sensor only when there are prices to estimate it
        base = f"{BASE_TOPIC}/{settings.node_id}"
        self.availability_topic = f"{base}/availability"
        self.state_topic = f"{base}/state"
        self.status_topic = f"{base}/status"
        self.usage_topic = f"{base}/usage"
        self.microphone_topic = f"{base}/microphone"
        connection.will = aiomqtt.Will(self.availability_topic, "offline", qos=1, retain=True)
        if settings.discovery:
            for topic, config in self.discovery_messages():
                connection.keep_published(topic, json.dumps(config, separators=(",", ":")))
        connection.keep_published(self.availability_topic, "online")

    def discovery_messages(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) of each entity: state, status, microphone, tokens today and
        (priced) cost today."""
        node = self.settings.node_id
        device = {
            "identifiers": [f"pi_live_voice_{node}"],
            "name": f"Voice device {node}",
            "manufacturer": "pi-live-voice",
            "model": "pi-live-voice",
        }
        common: dict[str, Any] = {
            "availability_topic": self.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        prefix = self.settings.discovery_prefix
        daily: dict[str, Any] = {
            **common,
            "state_topic": self.usage_topic,
            "state_class": "total",
            "last_reset_value_template": "{{ value_json.day_start }}",
        }
        usage = [
            (
                f"{prefix}/sensor/{node}/tokens_today/config",
                {
                    **daily,
                    "name": "Tokens today",
                    "unique_id": f"{node}_tokens_today",
                    "value_template": "{{ value_json.tokens_today }}",
                    "unit_of_measurement": "tokens",
                    "icon": "mdi:counter",
                },
            )
        ]
        if self._priced:
            usage.append(
                (
                    f"{prefix}/sensor/{node}/cost_today/config",
                    {
                        **daily,
                        "name": "Cost today",
                        "unique_id": f"{node}_cost_today",
                        "value_template": "{{ value_json.cost_today }}",
                        "device_class": "monetary",
                        "unit_of_measurement": "USD",
                        "suggested_display_precision": 4,
                    },
                )
            )
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
            (
                f"{prefix}/sensor/{node}/microphone/config",
                {
                    **common,
                    "name": "Microphone",
                    "unique_id": f"{node}_microphone",
                    "state_topic": self.microphone_topic,
                    "icon": "mdi:microphone-message",
                },
            ),
            *usage,
        ]

    def show_state(self, state: str) -> None:
        """Publish the daemon's state (retained); never waits."""
        self._connection.keep_published(self.state_topic, state)

    def show_status(self, text: str) -> None:
        """Publish the daemon's one-line status (retained); never waits."""
        self._connection.keep_published(self.status_topic, text[:MAX_STATE_CHARS])

    def show_microphone(self, where: str) -> None:
        """Publish where the microphone's audio goes (``sending``, ``local``, ``muted``;
        retained); never waits."""
        self._connection.keep_published(self.microphone_topic, where)

    def show_usage(self, day: dt.date, tokens: int, cost: float | None) -> None:
        """Publish ``day``'s usage so far (retained); never waits."""
        payload = {
            "day_start": dt.datetime.combine(day, dt.time()).astimezone().isoformat(),
            "tokens_today": tokens,
            "cost_today": None if cost is None else round(cost, 6),
        }
        self._connection.keep_published(self.usage_topic, json.dumps(payload))

    async def goodbye(self, timeout_s: float = 1.0) -> None:
        """Mark the device ``offline`` before a clean disconnect (which fires no last will),
        after the last state, status and usage: queued behind it, they would be lost."""
        self._connection.keep_published(self.availability_topic, "offline")
        try:
            async with asyncio.timeout(timeout_s):
                await self._connection.wait_published()
        except (MqttUnavailable, TimeoutError):
            log.info("could not mark the device offline; the broker's last will will do it")
