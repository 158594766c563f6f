"""A text payload that is JSON is refused at config load; the table payload it should be is
safe against the break-out argument, published through a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.settings_reader import SettingError
from services.testbed.mosquitto import Mosquitto
from services.tools.declarations import parse_tools
from services.tools.mqtt import MqttConnection
from tests.services.tools.conftest import fast_settings, registry, running, watching

BREAK_OUT = 'hi", "cmd": "unlock_door'
SAY: dict[str, Any] = {
    "name": "say",
    "description": "Show a text on the hall display.",
    "action": "mqtt_publish",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
    "topic": "display/hall/set",
}
CLI = Path(sys.executable).with_name("pi-live-voice")


@pytest.mark.parametrize(
    "payload", ['{"text": "${text}"}', '  [ "${text}" ]', '"${text}"', '{"text": "$text"}']
)
def test_a_json_text_payload_is_refused_with_a_pointer_to_tables(payload: str) -> None:
    with pytest.raises(SettingError, match=r"tools\[0\]\.payload: .*as a table"):
        parse_tools([{**SAY, "payload": payload}], mqtt=True, home_assistant=False)


def test_plain_text_and_fixed_json_payloads_stay_allowed() -> None:
    parse_tools(
        [{**SAY, "payload": "say ${text}"}, {**SAY, "name": "ping", "payload": '{"ping": 1}'}],
        mqtt=True,
        home_assistant=False,
    )


def test_check_config_refuses_the_trap_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        """\
[mqtt]
host = "127.0.0.1"

[[tools]]
name = "say"
description = "Show a text on the hall display."
action = "mqtt_publish"
topic = "display/hall/set"
payload = '{"text": "${text}"}'
[tools.parameters]
type = "object"
properties.text = { type = "string" }
"""
    )
    done = subprocess.run(
        [str(CLI), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78, done
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pi-live-voice: {config}: tools[0].payload: "), line


async def test_the_table_payload_keeps_the_break_out_inside_its_string(broker: Mosquitto) -> None:
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry([{**SAY, "payload": {"text": "${text}"}}], mqtt=connection)
    async with running(connection), watching(broker.port, "display/#") as inbox:
        outcome = await tools.call("say", {"text": BREAK_OUT})
        assert outcome.ok, outcome.payload
        await inbox.wait_for(lambda: bool(inbox.on("display/hall/set")))
    [published] = inbox.on("display/hall/set")
    assert json.loads(published) == {"text": BREAK_OUT}
