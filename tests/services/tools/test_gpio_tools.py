"""The GPIO tools over the device's real outputs (gpiozero on mock pins, the only fake)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.gpio import Outputs
from device.gpio_settings import OutputSettings
from services.tools.gpio import gpio_tools
from services.tools.registry import Behavior, ToolRegistry


@pytest.fixture
def outputs() -> Iterator[Outputs]:
    declared = (
        OutputSettings("kitchen_light", 5, description="the light over the sink"),
        OutputSettings("fan", 6, kind="pwm"),
    )
    outputs = Outputs(declared, MockFactory(pin_class=MockPWMPin))
    try:
        yield outputs
    finally:
        outputs.close()


def test_the_model_may_name_only_the_declared_outputs(outputs: Outputs) -> None:
    set_output, get_outputs = gpio_tools(outputs, 2.0, Behavior.NON_BLOCKING)
    assert (set_output.name, get_outputs.name) == ("set_output", "get_outputs")
    assert set_output.parameters["properties"]["name"]["enum"] == ["fan", "kitchen_light"]
    assert "kitchen_light: the light over the sink" in set_output.description
    assert "fan: pwm" in set_output.description  # no description: its kind says what it is
    assert {set_output.behavior, get_outputs.behavior} == {Behavior.NON_BLOCKING}
    assert set_output.timeout_s == get_outputs.timeout_s == 2.0


def test_no_outputs_no_tools() -> None:
    empty = Outputs((), MockFactory(pin_class=MockPWMPin))
    assert gpio_tools(empty, 2.0) == []


async def test_the_tools_drive_and_read_the_pins(outputs: Outputs) -> None:
    registry = ToolRegistry(gpio_tools(outputs, 2.0))
    done = await registry.call("set_output", {"name": "fan", "level": 0.25})
    assert done.ok
    assert done.payload == {"output": {"name": "fan", "on": True, "level": 0.25}}
    assert outputs.devices["fan"].value == pytest.approx(0.25)
    read = await registry.call("get_outputs", {})
    assert read.ok
    assert {"name": "kitchen_light", "on": False} in read.payload["output"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"name": "kitchen_light", "level": 0.5}, "has no level"),
        ({"name": "kitchen_light"}, "give on"),
        ({"name": "front_door", "on": True}, "front_door"),
    ],
)
async def test_a_bad_call_is_an_error_for_the_model(
    outputs: Outputs, args: dict[str, object], reason: str
) -> None:
    outcome = await ToolRegistry(gpio_tools(outputs, 2.0)).call("set_output", args)
    assert not outcome.ok
    assert reason in outcome.payload["error"]
    assert outputs.devices["kitchen_light"].value == 0
