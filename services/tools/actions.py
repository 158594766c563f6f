"""Tools declared in the config, made callable: MQTT and Home Assistant actions with guards.

Every argument is checked against the schema by the registry before a handler runs; here,
everything that leaves the device is rendered and checked *before* anything is sent — a topic
part that tries to escape its level, or an entity off the tool's allow-list, is refused with
nothing published. A tool with ``confirm`` answers with an explanation instead of acting
until it is called with ``confirmed=true``; ``rate_limit`` caps the calls per minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from services.tools.declarations import (
    CONFIRMED,
    HaService,
    HaState,
    MqttPublish,
    MqttState,
    ToolDeclaration,
)
from services.tools.home_assistant import HomeAssistant
from services.tools.mqtt import MqttConnection
from services.tools.registry import ToolConfigError, ToolHandler, ToolRefused, ToolSpec
from services.tools.templates import (
    TemplateError,
    render_structure,
    render_text,
    render_topic,
    subscription_filter,
)

# A Home Assistant request gets this share of the tool's time-out, so its own clear error
# ("did not answer within ...") arrives before the registry's generic one.
HA_SHARE_OF_TIMEOUT = 0.9


class ActionRefused(ToolRefused):
    """A call the action will not carry out; the message says why."""


class RateLimit:
    """At most ``per_minute`` calls in any 60 s (a sliding window)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._calls: deque[float] = deque()

    def take(self) -> float | None:
        """Count a call now; or, if the limit is reached, the seconds until one is free."""
        now = self._clock()
        while self._calls and now - self._calls[0] >= 60:
            self._calls.popleft()
        if len(self._calls) >= self.per_minute:
            return 60 - (now - self._calls[0])
        self._calls.append(now)
        return None


def _payload(template: str | Mapping[str, Any], args: Mapping[str, Any]) -> str:
    if isinstance(template, str):
        return render_text(template, args, "payload")
    return json.dumps(render_structure(template, args), separators=(",", ":"))


def _allowed(entity: str, entities: tuple[str, ...]) -> str:
    if entity not in entities:
        raise ActionRefused(
            f"{entity!r} is not an entity this tool may use; it may use {', '.join(entities)}"
        )
    return entity


def _mqtt_publish(action: MqttPublish, mqtt: MqttConnection) -> ToolHandler:
    if action.state_topic is not None:
        mqtt.watch(subscription_filter(action.state_topic))

    async def publish(args: dict[str, Any]) -> dict[str, Any]:
        # Everything is rendered (and checked) before anything is sent.
        topic = render_topic(action.topic, args)
        payload = _payload(action.payload, args)
        if action.state_topic is None:
            await mqtt.publish(topic, payload, qos=action.qos, retain=action.retain)
            return {"published": topic}
        state_topic = render_topic(action.state_topic, args)
        # Listening starts before the publish, so a device that answers at once is heard.
        with mqtt.expect(state_topic) as confirmation:
            await mqtt.publish(topic, payload, qos=action.qos, retain=action.retain)
            try:
                async with asyncio.timeout(action.state_timeout_s):
                    reading = await confirmation
            except TimeoutError:
                raise ActionRefused(
                    f"the command went to {topic}, but the device did not confirm on "
                    f"{state_topic} within {action.state_timeout_s:g} s"
                ) from None
        return {"published": topic, "confirmed_state": reading.value()}

    return publish


def _mqtt_state(action: MqttState, mqtt: MqttConnection) -> ToolHandler:
    mqtt.watch(subscription_filter(action.topic))

    async def read(args: dict[str, Any]) -> dict[str, Any]:
        topic = render_topic(action.topic, args)
        mqtt.require()
        reading = mqtt.last(topic)
        if reading is None:
            raise ActionRefused(f"nothing has been published on {topic} since the device started")
        age = round(time.monotonic() - reading.at, 1)
        return {"topic": topic, "value": reading.value(), "seconds_ago": age}

    return read


def _ha_service(action: HaService, ha: HomeAssistant, timeout_s: float) -> ToolHandler:
    async def call(args: dict[str, Any]) -> dict[str, Any]:
        entity = _allowed(render_text(action.entity_id, args, "entity id"), action.entities)
        data = {"entity_id": entity, **render_structure(action.data, args)}
        changed = await ha.call_service(action.domain, action.service, data, timeout_s)
        return {
            "called": f"{action.domain}.{action.service}",
            "entity_id": entity,
            "changed": changed,
        }

    return call


def _ha_state(action: HaState, ha: HomeAssistant, timeout_s: float) -> ToolHandler:
    async def read(args: dict[str, Any]) -> dict[str, Any]:
        entity = _allowed(render_text(action.entity_id, args, "entity id"), action.entities)
        return await ha.state(entity, timeout_s)

    return read


def _guarded(declaration: ToolDeclaration, handler: ToolHandler) -> ToolHandler:
    """The confirmation and rate-limit guards around ``handler``."""
    limit = None if declaration.rate_limit is None else RateLimit(declaration.rate_limit)
    name = declaration.name

    async def guarded(args: dict[str, Any]) -> Any:
        if declaration.confirm and args.get(CONFIRMED) is not True:
            return {
                "done": False,
                "refused": (
                    f"{name} needs the user's spoken confirmation. Ask the user; only if they "
                    f"say yes, call {name} again with confirmed=true."
                ),
            }
        if limit is not None and (wait := limit.take()) is not None:
            raise ActionRefused(
                f"{name} may run {limit.per_minute} times a minute and has; "
                f"try again in {wait:.0f} s"
            )
        try:
            return await handler(args)
        except TemplateError as exc:
            # An argument that cannot fill a template safely: a refusal, nothing was sent.
            raise ActionRefused(str(exc)) from None

    return guarded


def build_tools(
    declarations: Iterable[ToolDeclaration],
    *,
    mqtt: MqttConnection | None,
    home_assistant: HomeAssistant | None,
) -> list[ToolSpec]:
    """The tools the config declares, bound to the MQTT connection and Home Assistant client.

    Build them before the connection runs: the topics they watch are subscribed on connect.
    """
    specs = []
    for declaration in declarations:
        action = declaration.action
        handler: ToolHandler
        if isinstance(action, MqttPublish | MqttState):
            if mqtt is None:
                raise ToolConfigError(f"tool {declaration.name!r} needs an MQTT connection")
            if isinstance(action, MqttPublish):
                handler = _mqtt_publish(action, mqtt)
            else:
                handler = _mqtt_state(action, mqtt)
        else:
            if home_assistant is None:
                raise ToolConfigError(f"tool {declaration.name!r} needs Home Assistant")
            ha_timeout = min(
                home_assistant.settings.timeout_s, declaration.timeout_s * HA_SHARE_OF_TIMEOUT
            )
            if isinstance(action, HaService):
                handler = _ha_service(action, home_assistant, ha_timeout)
            else:
                handler = _ha_state(action, home_assistant, ha_timeout)
        description = declaration.description
        if declaration.confirm:
            description += " Ask the user to confirm aloud first, then pass confirmed=true."
        specs.append(
            ToolSpec(
                name=declaration.name,
                description=description,
                handler=_guarded(declaration, handler),
                parameters=declaration.parameters,
                timeout_s=declaration.timeout_s,
                behavior=declaration.behavior,
                scheduling=declaration.scheduling,
                idempotent=declaration.idempotent,
            )
        )
    return specs
