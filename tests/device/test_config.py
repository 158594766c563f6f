"""Config files: good ones load with defaults, bad ones fail in one line that names the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.config import (
    API_KEY_CREDENTIAL,
    EX_CONFIG,
    ConfigError,
    known_api_keys,
    load_api_key,
    load_settings,
    require_api_key,
)
from device.events import ButtonMode

GOOD = """
[live]
model = "gemini-live-2.5-flash"
voice = "Puck"

[button]
pin = 17
mode = "hold"

[[outputs]]
name = "kitchen_light"
pin = 5

[[outputs]]
name = "desk_lamp"
pin = 6
kind = "pwm"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    environ.pop("CREDENTIALS_DIRECTORY", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "device.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def test_a_good_config_loads_with_defaults_for_the_rest(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.live.model == "gemini-live-2.5-flash"
    assert settings.button.mode is ButtonMode.HOLD
    assert [o.name for o in settings.outputs] == ["kitchen_light", "desk_lamp"]
    assert settings.capture.device == "default"
    assert settings.live.manual_activity


def test_an_empty_config_is_all_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.outputs == ()
    assert settings.button.mode is ButtonMode.PRESS
    assert (settings.button.pin, settings.leds.status_pin, settings.leds.tool_pin) == (17, 22, 27)


def test_false_leaves_a_part_unfitted(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[button]\npin = false\nmode = 'always'\n"))
    assert settings.button.pin is None


BAD = [
    ("[live]\nmodle = 'x'\n", "live.modle", "unknown key"),
    ("[audio]\nframe_ms = '20'\n", "audio.frame_ms", "expected an integer, got '20'"),
    ("[button]\npin = true\n", "button.pin", "or false"),
    ("[vad]\naggressiveness = 7\n", "vad.aggressiveness", "between"),
    ("[button]\nmode = 'toggle'\n", "button.mode", "must be one of"),
    ("[gpio]\npin_factory = 'native'\n", "gpio.pin_factory", "must be one of lgpio, mock"),
    ("[usage]\nprices = { input_text = 1 }\n", "usage.prices.input_audio", "is required"),
    ("[live]\nconnect_timeout_s = 1" + "0" * 400 + "\n", "live.connect_timeout_s", "between"),
    ("[live]\nconnect_timeout_s = 1" + "0" * 5000 + "\n", "", "not valid TOML"),
    (
        "[usage.prices]\ninput_text = -1\ninput_audio = 3\noutput_text = 2\noutput_audio = 12\n",
        "usage.prices.input_text",
        "between",
    ),
    ("[usage]\ndaily_budget = 1.5\n", "usage.daily_budget", "needs [usage] prices"),
    (
        "[usage]\ndaily_budget = 0\nprices = { input_text = 1, input_audio = 1, "
        "output_text = 1, output_audio = 1 }\n",
        "usage.daily_budget",
        "between",
    ),
    ("[usage]\ndaily_budget = '2'\n", "usage.daily_budget", "expected"),
    ("[leds]\ntool_pending_pin = 17\n", "leds.tool_pending_pin", "already used by button.pin"),
    ("[mute]\npin = 17\n", "mute.pin", "already used by button.pin"),
    ("[mute]\npin = true\n", "mute.pin", "or false"),
    ("[mute]\nlatching = true\n", "mute.latching", "unknown key"),
    ("[[outputs]]\nname = 'a'\npin = 99\n", "outputs[0].pin", ""),
    (
        "[[outputs]]\nname = 'a'\npin = 5\n[[outputs]]\nname = 'a'\npin = 6\n",
        "outputs[1].name",
        "declared twice",
    ),
    ("[live]\napi_key = 'AIza-secret'\n", "live.api_key", "does not belong"),
    ("[live\n", "", "not valid TOML"),
    ("colour = 'red'\n", "colour", "unknown key"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD)
def test_a_bad_config_names_the_file_the_key_and_the_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert caught.value.key == key
    assert reason in message
    assert "\n" not in message
    assert "AIza-secret" not in message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_the_api_key_comes_from_the_environment_or_a_credential(tmp_path: Path) -> None:
    (tmp_path / API_KEY_CREDENTIAL).write_text("from-credential\n")
    assert load_api_key({"GEMINI_API_KEY": "from-env"}) == "from-env"
    assert load_api_key({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "from-credential"
    assert load_api_key({}) is None
    with pytest.raises(ConfigError, match="no API key"):
        require_api_key(tmp_path / "config.toml", {})
    # A variable that holds only white space is no key: the credential is read instead.
    blank = {"GEMINI_API_KEY": "  ", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load_api_key(blank) == "from-credential"
    with pytest.raises(ConfigError, match="no API key"):
        require_api_key(tmp_path / "config.toml", {"GEMINI_API_KEY": " \n"})


def test_the_redactor_is_given_every_key_the_process_could_use(tmp_path: Path) -> None:
    (tmp_path / API_KEY_CREDENTIAL).write_text("from-credential\n")
    environ = {
        "GEMINI_API_KEY": "from-gemini",
        "GOOGLE_API_KEY": " from-google ",
        "CREDENTIALS_DIRECTORY": str(tmp_path),
    }
    assert known_api_keys(environ) == ["from-gemini", "from-google", "from-credential"]
    # An unreadable credential (a directory in its place) is left to the command that needs it.
    (tmp_path / API_KEY_CREDENTIAL).unlink()
    (tmp_path / API_KEY_CREDENTIAL).mkdir()
    assert known_api_keys({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == []
    with pytest.raises(ConfigError):
        load_api_key({"CREDENTIALS_DIRECTORY": str(tmp_path)})


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_the_commands_exit_78_with_one_line_on_a_bad_config(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, "[button]\npin = 5\n[[outputs]]\nname = 'fan'\npin = 5\n")
    result = cli(command, "--config", str(path))
    assert result.returncode == EX_CONFIG
    errors = [line for line in result.stderr.splitlines() if line.startswith("pi-live-voice:")]
    assert errors == [f"pi-live-voice: {path}: outputs[0].pin: GPIO5 is already used by button.pin"]


def test_check_config_accepts_a_good_file_and_notes_a_missing_key(tmp_path: Path) -> None:
    result = cli("check-config", "--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "no API key" in result.stdout


def test_run_without_an_api_key_exits_78(tmp_path: Path) -> None:
    result = cli("run", "--config", str(write(tmp_path, GOOD)))
    assert result.returncode == EX_CONFIG
    assert "no API key" in result.stderr


def test_check_config_states_the_daily_budget(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[usage]\ndaily_budget = 1.5\n"
        "prices = { input_text = 0.5, input_audio = 3, output_text = 2, output_audio = 12 }\n",
    )
    assert load_settings(path).daily_budget == 1.5
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("daily budget: $1.50:") for line in result.stdout.splitlines())
