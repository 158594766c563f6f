"""The model profile in the config: [live] setup fields and per-tool behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import EX_CONFIG, ConfigError, load_settings
from services.tools.registry import Behavior, Scheduling
from tests.device.test_config import cli, write
from tests.device.test_config_home import ROOM, TOOL


def tool(extra: str) -> str:
    """The test [[tools]] entry with ``extra`` keys."""
    return TOOL + extra + ROOM


def test_the_default_model_is_the_ga_one(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.live.model == "gemini-3.8-live"
    assert settings.live.profile.name == "gemini-3.8-live"
    assert settings.live.thinking_budget is settings.live.proactive_audio is None


def test_setup_fields_and_behaviours_load(tmp_path: Path) -> None:
    text = (
        '[live]\nmodel = "gemini-2.5-flash-native-audio-latest"\nthinking_budget = 1024\n'
        "affective_dialog = true\nproactive_audio = false\n"
        '[daemon]\ngpio_tool_behavior = "non_blocking"\ngpio_tool_scheduling = "silent"\n'
        + tool('behavior = "blocking"\n')
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.live.thinking_budget == 1024
    assert (settings.live.affective_dialog, settings.live.proactive_audio) == (True, False)
    assert settings.gpio_tool_behavior is Behavior.NON_BLOCKING
    assert settings.gpio_tool_scheduling is Scheduling.SILENT
    assert settings.tools[0].behavior is Behavior.BLOCKING


BAD = [
    ("[live]\nthinking_budget = 99999\n", "live.thinking_budget", "between -1 and 32768"),
    ("[live]\nthinking_level = 'huge'\n", "live.thinking_level", "must be one of minimal"),
    ("[live]\nproactive_audio = false\n", "live.proactive_audio", "always uses proactive"),
    (
        "[live]\nmodel = 'gemini-3.1-flash-live-preview'\n[daemon]\n"
        "gpio_tool_behavior = 'non_blocking'\n",
        "daemon.gpio_tool_behavior",
        "takes only blocking tools",
    ),
    (
        "[live]\nmodel = 'gemini-3.8-live-extended-thinking'\n" + tool("behavior = 'blocking'\n"),
        "tools[0].behavior",
        "takes only non_blocking tools",
    ),
    (
        "[live]\nmodel = 'test'\n" + tool("scheduling = 'interrupt'\n"),
        "tools[0].scheduling",
        "only for non_blocking tools",
    ),
    (tool("behavior = 'async'\n"), "tools[0].behavior", "must be one of blocking, non_blocking"),
    ("[daemon]\ngpio_tool_scheduling = 'later'\n", "daemon.gpio_tool_scheduling", "one of"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD)
def test_a_setting_the_model_cannot_take_names_the_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == key
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_check_config_names_the_profile_and_what_it_leaves_out(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[live]\nmodel = 'gemini-3.1-flash-live-preview'\naffective_dialog = true\n"
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "profile: gemini-3.1-flash-live (model gemini-3.1-flash-live-preview)" in lines
    assert any(line.startswith("warning: live.affective_dialog will be left out") for line in lines)


def test_check_config_exits_78_on_a_behaviour_the_model_refuses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[live]\nmodel = 'gemini-3.1-flash-live-preview'\n" + tool("behavior = 'non_blocking'\n"),
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == EX_CONFIG
    errors = [line for line in result.stderr.splitlines() if line.startswith("pi-live-voice:")]
    assert errors == [
        f"pi-live-voice: {path}: tools[0].behavior: gemini-3.1-flash-live takes only blocking tools"
    ]


def test_a_tool_is_idempotent_when_it_reads_or_says_so(tmp_path: Path) -> None:
    publish = load_settings(write(tmp_path, tool(""))).tools[0]
    assert publish.idempotent is False
    declared = load_settings(write(tmp_path, tool("idempotent = true\n"))).tools[0]
    assert declared.idempotent is True
    read = TOOL.replace('action = "mqtt_publish"', 'action = "mqtt_state"')
    assert load_settings(write(tmp_path, read + ROOM)).tools[0].idempotent is True


def test_idempotent_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, tool("idempotent = 'yes'\n")))
    assert caught.value.key == "tools[0].idempotent"
