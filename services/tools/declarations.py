"""The ``[mqtt]``, ``[home_assistant]`` and ``[[tools]]`` config sections, from plain dicts.

The functions here take decoded TOML and return frozen settings, or raise
:class:`SettingError` naming the key at fault (``tools[0].parameters``) and the reason; the
config loader turns that into its one-line error. Secrets come from the file only when
written there; otherwise from a file, the environment, or systemd's credentials directory —
and they never appear in a message.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from services.tools.ha_device import HaDeviceSettings
from services.tools.home_assistant import HomeAssistantSettings
from services.tools.mqtt import MqttSettings
from services.tools.registry import ToolConfigError
from services.tools.templates import (
    TemplateError,
    check_text_payload,
    check_topic_template,
    placeholders,
    structure_placeholders,
)

MQTT_PASSWORD_CREDENTIAL = "mqtt-password"
HA_TOKEN_CREDENTIAL = "ha-token"
HA_TOKEN_ENV = "HOME_ASSISTANT_TOKEN"
ACTION_KINDS = ("mqtt_publish", "mqtt_state", "ha_service", "ha_state")
CONFIRMED = "confirmed"
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLUG = re.compile(r"[a-z0-9_]+")
_ENTITY = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")
T = TypeVar("T")
_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list: "an array",
}


class SettingError(ToolConfigError):
    """A setting that cannot be used: ``key`` names it, ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class MqttPublish:
    """Publish a templated payload; optionally wait for a state topic to confirm."""

    topic: str
    payload: str | Mapping[str, Any] = ""
    qos: int = 1
    retain: bool = False
    state_topic: str | None = None
    state_timeout_s: float = 3.0


@dataclass(frozen=True)
class MqttState:
    """Read the last value seen (or retained) on a topic."""

    topic: str


@dataclass(frozen=True)
class HaService:
    """Call one Home Assistant service on an entity from the allow-list."""

    domain: str
    service: str
    entities: tuple[str, ...]
    entity_id: str = "${entity_id}"
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HaState:
    """Read the state of an entity from the allow-list."""

    entities: tuple[str, ...]
    entity_id: str = "${entity_id}"


Action = MqttPublish | MqttState | HaService | HaState


@dataclass(frozen=True)
class ToolDeclaration:
    """A tool declared in the config: what the model sees, its guards, and its action."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    action: Action
    timeout_s: float = 5.0
    rate_limit: int | None = None  # calls per minute
    confirm: bool = False


class _Reader:
    """Reads one table, remembering which keys were asked for (to reject the others)."""

    def __init__(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise SettingError(name, f"must be a table, got {type(data).__name__}")
        self.name = name
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def fail(self, key: str, reason: str) -> SettingError:
        return SettingError(f"{self.name}.{key}", reason)

    def get(
        self,
        key: str,
        kinds: tuple[type, ...],
        default: T,
        check: Callable[[Any], str | None] | None = None,
    ) -> T:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            wanted = " or ".join(_WORDS[k] for k in kinds)
            secret = "password" in key or "token" in key
            raise self.fail(key, f"expected {wanted}" + ("" if secret else f", got {value!r}"))
        if check is not None and (problem := check(value)) is not None:
            raise self.fail(key, problem)
        return value  # type: ignore[return-value]

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key, (str,), default)
        if value is None or not value.strip():
            raise self.fail(key, "is required" if value is None else "must not be empty")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key, (int, float), default)
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def path(self, key: str) -> Path | None:
        value = self.get(key, (str,), None)
        if value is None:
            return None
        if not Path(value).is_file():
            raise self.fail(key, f"no such file: {value}")
        return Path(value)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def read_credential(name: str, environ: Mapping[str, str]) -> str | None:
    """Credential ``name`` from systemd's ``$CREDENTIALS_DIRECTORY``, if it is there."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip() or None
    return None


def _secret(t: _Reader, inline: str, file_key: str) -> str | None:
    """A secret written in the file, or read from a file it names (not both)."""
    value = t.get(inline, (str,), None)
    path = t.path(file_key)
    if value is not None and path is not None:
        raise t.fail(file_key, f"give {inline} or {file_key}, not both")
    if path is not None:
        return path.read_text(encoding="utf-8").strip() or None
    return value


def default_node_id() -> str:
    """This machine's host name, as Home Assistant accepts a node id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "pi_live_voice"


def parse_mqtt(
    data: Any, environ: Mapping[str, str] = os.environ
) -> tuple[MqttSettings, HaDeviceSettings | None]:
    """The ``[mqtt]`` table: the broker connection, and the device's presence in Home
    Assistant (its availability and state topics unless ``publish_state = false``, discovery
    unless ``discovery = false``)."""
    t = _Reader("mqtt", data)
    ca_file = t.path("ca_file")
    tls = t.get("tls", (bool,), ca_file is not None)
    if ca_file is not None and not tls:
        raise t.fail("ca_file", "is only used with tls = true")
    username = t.get("username", (str,), None)
    password = _secret(t, "password", "password_file")
    if username is None and password is not None:
        raise t.fail("password", "is only used with a username")
    if username is not None and password is None:
        password = read_credential(MQTT_PASSWORD_CREDENTIAL, environ)
    settings = MqttSettings(
        host=t.text("host"),
        port=int(t.number("port", 8883 if tls else 1883, 1, 65535)),
        tls=tls,
        ca_file=ca_file,
        username=username,
        password=password,
        client_id=t.get("client_id", (str,), None),
        keepalive_s=int(t.number("keepalive_s", 30, 5, 3600)),
    )
    announce = t.get("publish_state", (bool,), True)
    discovery = t.get("discovery", (bool,), True)
    if discovery and not announce and "discovery" in t.data:
        raise t.fail("discovery", "needs publish_state = true (the entities read its topics)")
    device = HaDeviceSettings(
        node_id=t.get(
            "node_id",
            (str,),
            default_node_id(),
            lambda v: None if _NODE_ID.fullmatch(v) else "letters, digits, _ and - only",
        ),
        discovery=discovery and announce,
        discovery_prefix=t.get(
            "discovery_prefix",
            (str,),
            "homeassistant",
            lambda v: None if _topic_ok(v) else "must be a plain topic prefix",
        ),
    )
    t.done()
    return settings, device if announce else None


def _topic_ok(value: str) -> bool:
    return bool(value) and not any(c in value for c in "#+\x00$") and "" not in value.split("/")


def parse_home_assistant(
    data: Any, environ: Mapping[str, str] = os.environ
) -> HomeAssistantSettings:
    """The ``[home_assistant]`` table; the token from ``token``/``token_file``, the
    ``HOME_ASSISTANT_TOKEN`` variable or the ``ha-token`` credential."""
    t = _Reader("home_assistant", data)
    url = t.text("url").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise t.fail("url", f"must start with http:// or https://, got {url!r}")
    token = (
        _secret(t, "token", "token_file")
        or environ.get(HA_TOKEN_ENV, "").strip()
        or read_credential(HA_TOKEN_CREDENTIAL, environ)
    )
    if not token:
        raise t.fail(
            "token",
            f"no token: set token_file, {HA_TOKEN_ENV}, or give systemd a credential named "
            f"{HA_TOKEN_CREDENTIAL!r}",
        )
    settings = HomeAssistantSettings(
        url=url,
        token=token,
        ca_file=t.path("ca_file"),
        timeout_s=t.number("timeout_s", 5.0, 0.1, 60),
    )
    t.done()
    return settings


def parse_tools(
    data: Any,
    *,
    mqtt: bool,
    home_assistant: bool,
    reserved: Collection[str] = (),
) -> tuple[ToolDeclaration, ...]:
    """The ``[[tools]]`` array. ``mqtt``/``home_assistant``: whether those sections exist;
    ``reserved``: names other tools already use."""
    if not isinstance(data, list):
        raise SettingError("tools", "must be an array of tables ([[tools]])")
    names: set[str] = set()
    tools = []
    for index, item in enumerate(data):
        tool = _tool(_Reader(f"tools[{index}]", item), mqtt=mqtt, home_assistant=home_assistant)
        if tool.name in reserved:
            raise SettingError(f"tools[{index}].name", f"{tool.name!r} is a built-in tool's name")
        if tool.name in names:
            raise SettingError(f"tools[{index}].name", f"{tool.name!r} is declared twice")
        names.add(tool.name)
        tools.append(tool)
    return tuple(tools)


def _tool(t: _Reader, *, mqtt: bool, home_assistant: bool) -> ToolDeclaration:
    name = t.text("name")
    if not _NAME.fullmatch(name):
        raise t.fail("name", "letters, digits and _ only (at most 64)")
    description = t.text("description")
    kind = t.text("action")
    if kind not in ACTION_KINDS:
        raise t.fail("action", f"must be one of {', '.join(ACTION_KINDS)}; got {kind!r}")
    needs = "mqtt" if kind.startswith("mqtt") else "home_assistant"
    if not (mqtt if needs == "mqtt" else home_assistant):
        raise t.fail("action", f"{kind} needs an [{needs}] section")
    timeout_s = t.number("timeout_s", 5.0, 0.1, 120)
    rate_limit = t.get("rate_limit", (int,), None)
    if rate_limit is not None and not 1 <= rate_limit <= 600:
        raise t.fail("rate_limit", f"calls per minute, between 1 and 600; got {rate_limit}")
    confirm = t.get("confirm", (bool,), False)
    entities = _entities(t) if kind.startswith("ha") else ()
    parameters = _parameters(t, entities, confirm)
    properties = set(parameters.get("properties", {}))
    action: Action
    if kind == "mqtt_publish":
        action = _mqtt_publish(t, properties, timeout_s)
    elif kind == "mqtt_state":
        action = MqttState(topic=_topic(t, "topic", properties))
    elif kind == "ha_service":
        action = HaService(
            domain=_slug(t, "domain"),
            service=_slug(t, "service"),
            entities=entities,
            entity_id=_template(t, "entity_id", properties, "${entity_id}"),
            data=_data(t, properties),
        )
    else:
        action = HaState(
            entities=entities, entity_id=_template(t, "entity_id", properties, "${entity_id}")
        )
    t.done()
    return ToolDeclaration(
        name=name,
        description=description,
        parameters=parameters,
        action=action,
        timeout_s=timeout_s,
        rate_limit=rate_limit,
        confirm=confirm,
    )


def _parameters(t: _Reader, entities: tuple[str, ...], confirm: bool) -> dict[str, Any]:
    """The JSON schema of the arguments; by default for an HA tool, a choice of its entities."""
    default: dict[str, Any] = {"type": "object", "properties": {}}
    if entities:
        default = {
            "type": "object",
            "properties": {"entity_id": {"type": "string", "enum": list(entities)}},
            "required": ["entity_id"],
        }
    raw = t.get("parameters", (dict, str), default)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise t.fail("parameters", f"not valid JSON: {exc}") from exc
    schema: dict[str, Any] = copy.deepcopy(raw)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise t.fail("parameters", f"invalid schema: {exc.message}") from exc
    if schema.get("type") != "object" or not isinstance(schema.get("properties", {}), dict):
        raise t.fail("parameters", 'invalid schema: must be {type = "object", properties = ...}')
    if confirm:
        properties = schema.setdefault("properties", {})
        if CONFIRMED in properties:
            raise t.fail("parameters", f"{CONFIRMED!r} is added by confirm = true; remove it")
        properties[CONFIRMED] = {
            "type": "boolean",
            "description": "true only after the user confirmed this action aloud",
        }
    return schema


def _check_names(t: _Reader, key: str, names: list[str], properties: set[str]) -> None:
    for name in names:
        if name not in properties:
            known = ", ".join(sorted(properties)) or "none"
            raise t.fail(key, f"${{{name}}} is not one of the tool's parameters ({known})")


def _template(t: _Reader, key: str, properties: set[str], default: str | None = None) -> str:
    template = t.text(key, default)
    try:
        _check_names(t, key, placeholders(template), properties)
    except TemplateError as exc:
        raise t.fail(key, str(exc)) from exc
    return template


def _topic(t: _Reader, key: str, properties: set[str]) -> str:
    template = t.text(key)
    try:
        _check_names(t, key, check_topic_template(template), properties)
    except TemplateError as exc:
        raise t.fail(key, str(exc)) from exc
    return template


def _mqtt_publish(t: _Reader, properties: set[str], timeout_s: float) -> MqttPublish:
    topic = _topic(t, "topic", properties)
    payload = t.get("payload", (str, dict), "")
    try:
        _check_names(t, "payload", structure_placeholders(payload), properties)
        if isinstance(payload, str):
            check_text_payload(payload)
    except TemplateError as exc:
        raise t.fail("payload", str(exc)) from exc
    state_topic = _topic(t, "state_topic", properties) if "state_topic" in t.data else None
    if state_topic == topic:
        raise t.fail("state_topic", "must differ from topic (our own message would confirm it)")
    state_timeout_s = t.number("state_timeout_s", round(0.8 * timeout_s, 2), 0.05, 120)
    if state_timeout_s >= timeout_s:
        raise t.fail("state_timeout_s", f"must be shorter than timeout_s ({timeout_s:g})")
    return MqttPublish(
        topic=topic,
        payload=payload,
        qos=t.get("qos", (int,), 1, lambda v: None if v in (0, 1, 2) else "must be 0, 1 or 2"),
        retain=t.get("retain", (bool,), False),
        state_topic=state_topic,
        state_timeout_s=state_timeout_s,
    )


def _slug(t: _Reader, key: str) -> str:
    value = t.text(key)
    if not _SLUG.fullmatch(value):
        raise t.fail(key, f"lower-case letters, digits and _ only; got {value!r}")
    return value


def _entities(t: _Reader) -> tuple[str, ...]:
    values = t.get("entities", (list,), None)
    if not values:
        raise t.fail("entities", "is required: the entity ids this tool may use")
    for value in values:
        if not isinstance(value, str) or not _ENTITY.fullmatch(value):
            raise t.fail("entities", f"{value!r} is not an entity id like light.kitchen")
    return tuple(values)


def _data(t: _Reader, properties: set[str]) -> dict[str, Any]:
    data: dict[str, Any] = t.get("data", (dict,), {})
    if "entity_id" in data:
        raise t.fail("data", "entity_id comes from the entity_id key and the allow-list")
    try:
        _check_names(t, "data", structure_placeholders(data), properties)
    except TemplateError as exc:
        raise t.fail("data", str(exc)) from exc
    return data
