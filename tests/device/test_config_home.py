"""The home-action sections of the config: [mqtt], [home_assistant] and [[tools]]."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import EX_CONFIG, ConfigError, load_settings
from services.tools.declarations import HaService, MqttPublish
from tests.device.test_config import cli, write

GOOD = """
[mqtt]
host = "broker.lan"
username = "voice"
node_id = "kitchen_pi"

[home_assistant]
url = "http://homeassistant.local:8123/"

[[tools]]
name = "set_light"
description = "Switch the light of a room on or off."
action = "mqtt_publish"
topic = "home/${room}/light/set"
payload = { state = "${on}" }
state_topic = "home/${room}/light/state"
rate_limit = 20
[tools.parameters]
type = "object"
required = ["room", "on"]
properties.room = { type = "string", enum = ["kitchen", "hall"] }
properties.on = { type = "boolean" }

[[tools]]
name = "open_garage"
description = "Open the garage door."
action = "ha_service"
domain = "cover"
service = "open_cover"
entities = ["cover.garage"]
confirm = true
"""


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "mqtt-password").write_text("mqtt-secret\n")
    (directory / "ha-token").write_text("ha-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    monkeypatch.delenv("HOME_ASSISTANT_TOKEN", raising=False)
    return directory


def test_a_good_config_declares_tools_with_secrets_from_credentials(
    tmp_path: Path, credentials: Path
) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.mqtt is not None
    assert settings.mqtt.password == "mqtt-secret"
    assert settings.ha_device is not None
    assert settings.ha_device.node_id == "kitchen_pi"
    assert settings.home_assistant is not None
    assert settings.home_assistant.url == "http://homeassistant.local:8123"
    assert settings.home_assistant.token == "ha-secret"
    light, garage = settings.tools
    assert isinstance(light.action, MqttPublish)
    assert light.action.state_timeout_s == 4.0  # 80 % of the default 5 s time-out
    assert light.rate_limit == 20
    assert isinstance(garage.action, HaService)
    assert garage.parameters["properties"]["confirmed"] == {
        "type": "boolean",
        "description": "true only after the user confirmed this action aloud",
    }
    assert "secret" not in repr(settings)


TOOL = """
[mqtt]
host = "broker.lan"

[[tools]]
name = "set_light"
description = "Switch a light."
action = "mqtt_publish"
topic = "home/${room}/light/set"
"""
ROOM = '[tools.parameters]\ntype = "object"\nproperties.room = { type = "string" }\n'

BAD = [
    (TOOL + 'parameters = { type = "objekt" }\n', "tools[0].parameters", "invalid schema: "),
    (TOOL + "parameters = '{\"type\": '\n", "tools[0].parameters", "not valid JSON"),
    (TOOL, "tools[0].topic", "${room} is not one of the tool's parameters (none)"),
    (TOOL.replace('action = "mqtt_publish"', 'action = "shell"'), "tools[0].action", "one of"),
    (TOOL.replace('topic = "home/${room}/light/set"', ""), "tools[0].topic", "is required"),
    (TOOL.replace("${room}", "+"), "tools[0].topic", "may not contain '+'"),
    (TOOL + "qos = 3\n" + ROOM, "tools[0].qos", "must be 0, 1 or 2"),
    (TOOL + "colour = 'red'\n" + ROOM, "tools[0].colour", "unknown key"),
    (TOOL + "state_topic = 'home/${room}/light/set'\n" + ROOM, "tools[0].state_topic", "differ"),
    (TOOL + "timeout_s = 2\nstate_timeout_s = 2\n" + ROOM, "tools[0].state_timeout_s", "shorter"),
    (TOOL + "payload = '${colour}'\n" + ROOM, "tools[0].payload", "${colour} is not one"),
    (
        TOOL.replace('[mqtt]\nhost = "broker.lan"\n', "") + ROOM,
        "tools[0].action",
        "needs an [mqtt]",
    ),
    (TOOL.replace("set_light", "set_output") + ROOM, "tools[0].name", "built-in tool"),
    (TOOL + ROOM + TOOL.split("\n", 3)[3] + ROOM, "tools[1].name", "declared twice"),
    ("[mqtt]\nport = 1883\n", "mqtt.host", "is required"),
    ("[mqtt]\nhost = 'b'\nport = 70000\n", "mqtt.port", "between 1 and 65535"),
    ("[mqtt]\nhost = 'b'\npassword = 'hunter2'\n", "mqtt.password", "only used with a username"),
    ("[mqtt]\nhost = 'b'\nusername = 'u'\npassword = 1234\n", "mqtt.password", "expected a string"),
    ("[mqtt]\nhost = 'b'\nca_file = '/nonexistent.pem'\n", "mqtt.ca_file", "no such file"),
    ("[mqtt]\nhost = 'b'\nnode_id = 'a/b'\n", "mqtt.node_id", "letters, digits"),
    ("[home_assistant]\nurl = 'ftp://x'\ntoken = 't'\n", "home_assistant.url", "http://"),
    ("[home_assistant]\nurl = 'http://ha:8123'\n", "home_assistant.token", "no token"),
    (
        "[home_assistant]\nurl = 'http://ha'\ntoken = 't'\n[[tools]]\nname = 'x'\n"
        "description = 'd'\naction = 'ha_state'\nentities = ['Kitchen Light']\n",
        "tools[0].entities",
        "not an entity id",
    ),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD)
def test_a_bad_home_section_names_the_key_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, reason: str
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("HOME_ASSISTANT_TOKEN", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert caught.value.key == key, message
    assert message.startswith(f"{path}: {key}: ")
    assert reason in message
    assert "\n" not in message
    assert "hunter2" not in message
    assert "1234" not in message


def test_check_config_exits_78_naming_an_invalid_tool_schema(tmp_path: Path) -> None:
    path = write(tmp_path, TOOL + 'parameters = { type = "object", required = "room" }\n')
    result = cli("check-config", "--config", str(path))
    assert result.returncode == EX_CONFIG
    errors = [line for line in result.stderr.splitlines() if line.startswith("pi-live-voice:")]
    assert errors == [
        f"pi-live-voice: {path}: tools[0].parameters: invalid schema: 'room' is not of type 'array'"
    ]
