"""The ``[mqtt]``, ``[home_assistant]`` and ``[[tools]]`` config sections, from plain dicts.

The functions here take decoded TOML and return frozen settings, or raise
:class:`~services.settings_reader.SettingError` naming the key at fault
(``tools[0].parameters``) and the reason; the config loader turns that into its one-line
error. Secrets come from the file only when written there; otherwise from a file, the
environment, or systemd's credentials directory — and they never appear in a message.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from services.settings_reader import SettingError, Table
from services.settings_rules import (
    FileProblem,
    excerpt,
    host_problem,
    read_small_text,
    text_rule,
    url_problem,
)
from services.settings_rules import ca_file as pem_file
from services.tools.ha_device import HaDeviceSettings
from services.tools.home_assistant import HomeAssistantSettings
from services.tools.mqtt import MqttSettings
from services.tools.registry import Behavior, Scheduling, schema_problem
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
# The actions that only read a state: a second run does no harm.
READ_ACTIONS = ("mqtt_state", "ha_state")
CONFIRMED = "confirmed"
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_NAME_FORM = "letters, digits and _ only (at most 64)"
TOPIC = text_rule(512)
PAYLOAD = text_rule(64 * 1024, re.compile(r"[^\x00]*", re.DOTALL), "no NUL characters")
DESCRIPTION = text_rule(4000, re.compile(r"[^\x00]*", re.DOTALL), "no NUL characters")
SECRET = text_rule(4096)
CLIENT_ID = text_rule(128, re.compile(r"[\x21-\x7e]+"), "printable ASCII without spaces")
_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLUG = re.compile(r"[a-z0-9_]+")
_ENTITY = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")


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
    # None: the model profile's default; the profile is checked once the model is known.
    behavior: Behavior | None = None
    scheduling: Scheduling | None = None
    idempotent: bool = False


def read_credential(name: str, environ: Mapping[str, str]) -> str | None:
    """Credential ``name`` from systemd's ``$CREDENTIALS_DIRECTORY``, if it is there;
    raises :class:`~services.settings_rules.FileProblem` when it is there but unreadable."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        candidate = Path(directory) / name
        if candidate.exists():
            return read_small_text(candidate).strip() or None
    return None


def _credential(t: Table, key: str, name: str, environ: Mapping[str, str]) -> str | None:
    try:
        return read_credential(name, environ)
    except FileProblem as exc:
        raise t.fail(key, f"credential {name}: {exc}") from exc


def _secret(t: Table, inline: str, file_key: str) -> str | None:
    """A secret written in the file, or read from a file it names (not both)."""
    value = t.get(inline, (str,), None, SECRET)
    path = t.path(file_key)
    if value is not None and path is not None:
        raise t.fail(file_key, f"give {inline} or {file_key}, not both")
    if path is not None:
        try:
            return read_small_text(path).strip() or None
        except FileProblem as exc:
            raise t.fail(file_key, str(exc)) from exc
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
    t = Table("mqtt", data)
    ca_file = t.path("ca_file", pem_file)
    tls = t.get("tls", (bool,), ca_file is not None)
    if ca_file is not None and not tls:
        raise t.fail("ca_file", "is only used with tls = true")
    username = t.get("username", (str,), None)
    password = _secret(t, "password", "password_file")
    if username is None and password is not None:
        raise t.fail("password", "is only used with a username")
    if username is not None and password is None:
        password = _credential(t, "password", MQTT_PASSWORD_CREDENTIAL, environ)
    settings = MqttSettings(
        host=t.text("host", None, host_problem),
        port=t.integer("port", 8883 if tls else 1883, 1, 65535),
        tls=tls,
        ca_file=ca_file,
        username=username,
        password=password,
        client_id=t.get("client_id", (str,), None, CLIENT_ID),
        keepalive_s=t.integer("keepalive_s", 30, 5, 3600),
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
            lambda v: None if _topic_ok(v) and len(v) <= 256 else "must be a plain topic prefix",
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
    t = Table("home_assistant", data)
    url = t.text("url", None, lambda v: url_problem(v, ("http", "https"))).rstrip("/")
    token = (
        _secret(t, "token", "token_file")
        or environ.get(HA_TOKEN_ENV, "").strip()
        or _credential(t, "token", HA_TOKEN_CREDENTIAL, environ)
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
        ca_file=t.path("ca_file", pem_file),
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
        tool = _tool(Table(f"tools[{index}]", item), mqtt=mqtt, home_assistant=home_assistant)
        if tool.name in reserved:
            raise SettingError(f"tools[{index}].name", f"{tool.name!r} is a built-in tool's name")
        if tool.name in names:
            raise SettingError(f"tools[{index}].name", f"{tool.name!r} is declared twice")
        names.add(tool.name)
        tools.append(tool)
    return tuple(tools)


def _tool(t: Table, *, mqtt: bool, home_assistant: bool) -> ToolDeclaration:
    name = t.text("name", None, lambda v: None if _NAME.fullmatch(v) else _NAME_FORM)
    description = t.text("description", None, DESCRIPTION)
    kind = t.text("action")
    if kind not in ACTION_KINDS:
        raise t.fail("action", f"must be one of {', '.join(ACTION_KINDS)}; got {kind!r}")
    needs = "mqtt" if kind.startswith("mqtt") else "home_assistant"
    if not (mqtt if needs == "mqtt" else home_assistant):
        raise t.fail("action", f"{kind} needs an [{needs}] section")
    timeout_s = t.number("timeout_s", 5.0, 0.1, 120)
    rate_limit = t.get(
        "rate_limit",
        (int,),
        None,
        lambda v: None if 1 <= v <= 600 else f"calls per minute, between 1 and 600; got {v}",
    )
    confirm = t.get("confirm", (bool,), False)
    idempotent = t.get("idempotent", (bool,), kind in READ_ACTIONS)
    behavior = _choice(t, "behavior", Behavior)
    scheduling = _choice(t, "scheduling", Scheduling)
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
        behavior=None if behavior is None else Behavior(behavior),
        scheduling=None if scheduling is None else Scheduling(scheduling),
        idempotent=idempotent,
    )


def _choice(t: Table, key: str, kind: type[StrEnum]) -> str | None:
    choices = [m.value for m in kind]
    value: str | None = t.get(
        key,
        (str,),
        None,
        lambda v: None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}",
    )
    return value


def _parameters(t: Table, entities: tuple[str, ...], confirm: bool) -> dict[str, Any]:
    """The JSON schema of the arguments; by default for an HA tool, a choice of its entities."""
    default: dict[str, Any] = {"type": "object", "properties": {}}
    if entities:
        default = {
            "type": "object",
            "properties": {"entity_id": {"type": "string", "enum": list(entities)}},
            "required": ["entity_id"],
        }
    raw = t.get(
        "parameters", (dict, str), default, lambda v: PAYLOAD(v) if isinstance(v, str) else None
    )
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except RecursionError as exc:
            raise t.fail("parameters", "not valid JSON: nested too deeply") from exc
        except ValueError as exc:
            raise t.fail("parameters", f"not valid JSON: {exc}") from exc
    # Checked before the copy: a schema nested thousands deep must not reach deepcopy.
    problem = schema_problem(raw)
    if problem is not None:
        raise t.fail("parameters", f"invalid schema: {problem}")
    schema: dict[str, Any] = copy.deepcopy(raw)
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


def _check_names(t: Table, key: str, names: list[str], properties: set[str]) -> None:
    for name in names:
        if name not in properties:
            known = ", ".join(sorted(properties)) or "none"
            raise t.fail(key, f"${{{name}}} is not one of the tool's parameters ({known})")


def _template(t: Table, key: str, properties: set[str], default: str | None = None) -> str:
    template = t.text(key, default)
    try:
        _check_names(t, key, placeholders(template), properties)
    except TemplateError as exc:
        raise t.fail(key, str(exc)) from exc
    return template


def _topic(t: Table, key: str, properties: set[str]) -> str:
    template = t.text(key, None, TOPIC)
    try:
        _check_names(t, key, check_topic_template(template), properties)
    except TemplateError as exc:
        raise t.fail(key, str(exc)) from exc
    return template


def _mqtt_publish(t: Table, properties: set[str], timeout_s: float) -> MqttPublish:
    topic = _topic(t, "topic", properties)
    payload = t.get(
        "payload", (str, dict), "", lambda v: PAYLOAD(v) if isinstance(v, str) else None
    )
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


def _slug(t: Table, key: str) -> str:
    value = t.text(key)
    if not _SLUG.fullmatch(value):
        raise t.fail(key, f"lower-case letters, digits and _ only; got {value!r}")
    return value


def _entities(t: Table) -> tuple[str, ...]:
    values = t.get("entities", (list,), None)
    if not values:
        raise t.fail("entities", "is required: the entity ids this tool may use")
    if len(values) > 256:
        raise t.fail("entities", f"at most 256 entities, got {len(values)}")
    for value in values:
        if not isinstance(value, str) or not _ENTITY.fullmatch(value) or len(value) > 255:
            raise t.fail("entities", f"{excerpt(value)} is not an entity id like light.kitchen")
    return tuple(values)


def _data(t: Table, properties: set[str]) -> dict[str, Any]:
    data: dict[str, Any] = t.get("data", (dict,), {})
    if "entity_id" in data:
        raise t.fail("data", "entity_id comes from the entity_id key and the allow-list")
    try:
        _check_names(t, "data", structure_placeholders(data), properties)
    except TemplateError as exc:
        raise t.fail("data", str(exc)) from exc
    return data
