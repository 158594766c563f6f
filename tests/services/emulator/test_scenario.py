"""Scenario files: the built-in default, and errors that name the key at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.cli import main
from services.emulator.scenario import ScenarioError, default_scenario, load_scenario


def test_default_scenario_has_a_tool_call() -> None:
    scenario = default_scenario()
    assert scenario.turns[0].tool_calls[0].name == "set_output"
    assert scenario.turn(99).reply == scenario.fallback_reply


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"turns": "x"}, "scenario.turns"),
        ({"turns": [{"reply": 3}]}, "scenario.turns[0].reply"),
        ({"turns": [{"reply": "", "bogus": 1}]}, "unknown key 'bogus'"),
        ({"turns": [{"tool_calls": [{"args": {}}]}]}, "scenario.turns[0].tool_calls[0].name"),
        ({"turns": [{"faults": [{"kind": "explode"}]}]}, "scenario.turns[0].faults[0].kind"),
        ({"turns": [], "grace_ms": True}, "scenario.grace_ms"),
        ({"turns": [{"faults": [{"kind": "hostile"}]}]}, "takes frame or text"),
        (
            {"turns": [{"faults": [{"kind": "hostile", "frame": "nope"}]}]},
            "scenario.turns[0].faults[0].frame",
        ),
        (
            {"turns": [{"faults": [{"kind": "hostile", "text": "x", "count": 0}]}]},
            "scenario.turns[0].faults[0].count",
        ),
        ({"turns": [], "setup_frame": {"frame": "nope"}}, "scenario.setup_frame.frame"),
    ],
)
def test_bad_scenarios_name_the_file_and_key(tmp_path: Path, data: object, key: str) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_emulator_command_exits_78_on_a_bad_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{")
    assert main(["emulator", "--scenario", str(path), "--cert-out", str(tmp_path / "c")]) == 78
    assert "not JSON" in capsys.readouterr().err
