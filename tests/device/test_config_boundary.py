"""The config as a boundary: generated configs, and each class of fault the issue lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from device.config import ConfigError, load_settings, parse_settings
from tests.device.config_judge import check_config, judge, try_hostile
from tests.strategies import FileSpec, HostileConfig, hostile_configs, valid_configs

QUICK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(valid_configs())
def test_generated_valid_configs_load(config: dict[str, object]) -> None:
    status, err, _ = check_config(HostileConfig(config, ""))
    assert (status, err) == (0, "")


@QUICK
@given(hostile_configs())
def test_each_generated_hostile_config_exits_78_with_one_short_line_naming_the_key(
    case: HostileConfig,
) -> None:
    assert try_hostile(case) is None


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("live", "connect_timeout_s", "inf", "between 0.5 and 120 seconds"),
        ("live", "stall_timeout_s", "1e308", "between 1 and 600 seconds"),
        ("daemon", "gpio_tool_timeout_s", "1e-9", "between 0.05 and 60 seconds"),
        ("live", "model", '""', "letters, digits"),
        ("live", "endpoint", '"ftp://x.test"', "must start with https://"),
        ("live", "endpoint", '"not a url"', "must be a URL"),
        ("audio", "capture_device", '""', "ALSA PCM name"),
        ("outputs", "name", '"' + "x" * 100_000 + '"', "at most 64 characters"),
    ],
)
def test_the_reported_values_are_refused(
    tmp_path: Path, section: str, key: str, value: str, reason: str
) -> None:
    header = "[[outputs]]\npin = 5\n" if section == "outputs" else f"[{section}]\n"
    path = tmp_path / "c.toml"
    path.write_text(f"{header}{key} = {value}\n")
    with pytest.raises(ConfigError, match=reason) as caught:
        load_settings(path)
    assert caught.value.key.endswith(key)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ('host = "broker.local"\nport = 1883.5\n', "mqtt.port", "expected an integer"),
        ('host = "broker.local"\nkeepalive_s = 30.5\n', "mqtt.keepalive_s", "expected an integer"),
        ('host = "a b"\n', "mqtt.host", "host name or an IP address"),
        ('host = "h"\ntls = true\nca_file = "@"\n', "mqtt.ca_file", "not a PEM CA file"),
    ],
)
def test_mqtt_values_are_not_silently_truncated_or_taken_as_they_come(
    tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello\n")
    data = {"mqtt": _toml(toml.replace('"@"', f'"{not_pem}"'))}
    with pytest.raises(ConfigError, match=reason) as caught:
        parse_settings(data, tmp_path / "c.toml")
    assert caught.value.key == key


def _toml(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)


def test_a_fifo_config_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "check-config", "--config", str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 78
    assert done.stderr == f"pi-live-voice: {fifo}: not a regular file\n"


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe[live]\n", b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n"],
    ids=["binary", "deep"],
)
def test_a_binary_or_deeply_nested_file_is_one_line_naming_the_file(raw: bytes) -> None:
    case = HostileConfig(None, "", raw=raw)
    status, err, path = check_config(case)
    assert judge(case, status, err, path) is None


def test_a_binary_api_key_credential_names_the_credential_file() -> None:
    config = {"live": {"model": "gemini-live-2.5-flash"}}
    case = HostileConfig(config, "gemini-api-key", credential=FileSpec(b"\xff\xfe\x00"))
    status, err, path = check_config(case)
    assert judge(case, status, err, path) is None
    assert "not UTF-8 text" in err


def test_a_newline_in_an_unknown_key_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[live]\n"bad\\nkey" = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: live.bad\\nkey: unknown key"


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ('"true"', "must be a JSON schema object, not true"),
        (
            """'{"type": "object", "properties": {"a": {"$ref": "#/$defs/no"}}}'""",
            "does not resolve",
        ),
        # Python 3.11's JSON parser gives up on it (RecursionError); 3.13's reads it, and the
        # schema's own depth bound refuses it.
        (
            "'" + '{"not": ' * 3000 + "{}" + "}" * 3000 + "'",
            "nested (too deeply|deeper than 32 levels)",
        ),
    ],
)
def test_a_schema_that_cannot_validate_is_refused_by_check_config(
    tmp_path: Path, schema: str, reason: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[mqtt]\nhost = "b"\n[[tools]]\nname = "t"\ndescription = "d"\naction = "mqtt_state"\n'
        f'topic = "a/b"\nparameters = {schema}\n'
    )
    with pytest.raises(ConfigError, match=reason) as caught:
        load_settings(path)
    assert caught.value.key == "tools[0].parameters"
