"""Home Assistant tools against a local server with the REST API's real shapes and failures."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.tools.declarations import parse_home_assistant
from services.tools.home_assistant import HomeAssistant
from services.tools.registry import ToolRegistry
from tests.services.tools.conftest import registry
from tests.services.tools.ha_server import TOKEN, FakeHomeAssistant

LIGHTS = {
    "name": "light_on",
    "description": "Turn on a light, optionally dimmed.",
    "action": "ha_service",
    "domain": "light",
    "service": "turn_on",
    "entities": ["light.kitchen", "light.attic"],
    "parameters": {
        "type": "object",
        "properties": {
            "entity_id": {"type": "string"},
            "brightness_pct": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        "required": ["entity_id", "brightness_pct"],
    },
    "data": {"brightness_pct": "${brightness_pct}"},
    "timeout_s": 2,
}
READ = {
    "name": "read_state",
    "description": "Read the state of a light or sensor.",
    "action": "ha_state",
    "entities": ["light.kitchen", "sensor.outside", "light.attic"],
}
GARAGE = {
    "name": "open_garage",
    "description": "Open the garage door.",
    "action": "ha_service",
    "domain": "cover",
    "service": "open_cover",
    "entities": ["cover.garage"],
    "confirm": True,
}


def client_for(url: str, token: str = TOKEN, timeout_s: float = 5.0) -> HomeAssistant:
    """A client built from an ``[home_assistant]`` table, the token from the environment."""
    settings = parse_home_assistant(
        {"url": url, "timeout_s": timeout_s}, {"HOME_ASSISTANT_TOKEN": token}
    )
    return HomeAssistant(settings)


@pytest.fixture
async def server() -> AsyncIterator[FakeHomeAssistant]:
    async with FakeHomeAssistant() as ha:
        yield ha


def tools_for(ha: HomeAssistant) -> ToolRegistry:
    return registry([LIGHTS, READ, GARAGE], home_assistant=ha)


async def test_a_service_call_returns_the_changed_states(server: FakeHomeAssistant) -> None:
    ha = client_for(server.url)
    try:
        tools = tools_for(ha)
        outcome = await tools.call("light_on", {"entity_id": "light.kitchen", "brightness_pct": 40})
        read = await tools.call("read_state", {"entity_id": "light.kitchen"})
    finally:
        await ha.aclose()
    assert outcome.payload == {
        "output": {
            "called": "light.turn_on",
            "entity_id": "light.kitchen",
            "changed": [
                {
                    "entity_id": "light.kitchen",
                    "state": "on",
                    "attributes": {"friendly_name": "Kitchen", "brightness_pct": 40},
                }
            ],
        }
    }
    assert read.payload["output"]["state"] == "on"
    [call, _] = server.requests
    assert (call.method, call.path) == ("POST", "/api/services/light/turn_on")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.body == {"entity_id": "light.kitchen", "brightness_pct": 40}


async def test_a_state_read_of_a_sensor(server: FakeHomeAssistant) -> None:
    ha = client_for(server.url)
    try:
        tools = tools_for(ha)
        outcome = await tools.call("read_state", {"entity_id": "sensor.outside"})
    finally:
        await ha.aclose()
    assert outcome.payload["output"] == {
        "entity_id": "sensor.outside",
        "state": "4.5",
        "attributes": {"friendly_name": "Outside", "unit_of_measurement": "°C"},
    }
    # Without a parameters schema, the model chooses among the allowed entities.
    spec = tools.spec("read_state")
    assert spec is not None
    assert spec.parameters["properties"]["entity_id"]["enum"] == READ["entities"]


FAILURES = [
    ("bad token", "refused the access token (401 Unauthorized)"),
    ("unknown entity", "does not know entity light.attic (404: Entity not found.)"),
    ("slow", "did not answer within 0.3 s"),
    ("refused", "cannot reach Home Assistant at http://127.0.0.1:"),
]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("failure", "message"), FAILURES)
async def test_each_failure_is_a_clear_error_for_the_model(
    server: FakeHomeAssistant, failure: str, message: str
) -> None:
    url = server.url if failure != "refused" else f"http://127.0.0.1:{closed_port()}"
    server.delay_s = 3.0 if failure == "slow" else 0.0
    ha = client_for(url, "not-the-token" if failure == "bad token" else TOKEN, timeout_s=0.3)
    try:
        started = time.monotonic()
        outcome = await tools_for(ha).call("read_state", {"entity_id": "light.attic"})
        elapsed = time.monotonic() - started
    finally:
        await ha.aclose()
    assert not outcome.ok
    assert message in outcome.payload["error"]
    assert "not-the-token" not in outcome.payload["error"]
    assert TOKEN not in outcome.payload["error"]
    assert elapsed < 1.5


async def test_a_service_time_out_is_shorter_than_the_tool_time_out(
    server: FakeHomeAssistant,
) -> None:
    server.delay_s = 5.0
    ha = client_for(server.url, timeout_s=30)
    try:
        outcome = await tools_for(ha).call(
            "light_on", {"entity_id": "light.kitchen", "brightness_pct": 10}
        )
    finally:
        await ha.aclose()
    # The tool allows 2 s; Home Assistant gets 90 % of it and its own clear message.
    assert "did not answer within 1.8 s" in outcome.payload["error"]


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "light_on",
        {"entity_id": "light.hall", "brightness_pct": 10},
        "'light.hall' is not an entity",
    ),
    ("light_on", {"entity_id": "light.kitchen", "brightness_pct": 0}, "invalid arguments"),
    ("light_on", {"entity_id": "../states/x", "brightness_pct": 5}, "is not an entity"),
    ("read_state", {"entity_id": "lock.front_door"}, "invalid arguments"),
    ("open_garage", {"entity_id": "cover.garage"}, ""),
    ("open_garage", {"entity_id": "cover.garage", "confirmed": False}, ""),
]


@pytest.mark.parametrize(("tool", "args", "message"), REFUSED)
async def test_off_list_entities_bad_arguments_and_unconfirmed_calls_send_nothing(
    server: FakeHomeAssistant, tool: str, args: dict[str, Any], message: str
) -> None:
    ha = client_for(server.url)
    try:
        outcome = await tools_for(ha).call(tool, args)
    finally:
        await ha.aclose()
    assert server.requests == []
    if tool == "open_garage":
        assert outcome.payload["output"]["done"] is False
        assert "confirmed=true" in outcome.payload["output"]["refused"]
    else:
        assert message in outcome.payload["error"]


async def test_a_confirmed_call_goes_through(server: FakeHomeAssistant) -> None:
    ha = client_for(server.url)
    try:
        outcome = await tools_for(ha).call(
            "open_garage", {"entity_id": "cover.garage", "confirmed": True}
        )
    finally:
        await ha.aclose()
    assert outcome.payload["output"]["changed"][0]["state"] == "opening"
    assert [r.body for r in server.requests] == [{"entity_id": "cover.garage"}]
