"""A refused call is one warning line (tool, arguments excerpt, reason); a bug keeps its trace."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from services.testbed.mosquitto import Mosquitto
from services.tools.mqtt import MqttConnection
from services.tools.registry import ARGS_EXCERPT_CHARS, ToolSpec
from tests.services.tools.conftest import SET_LIGHT, fast_settings, registry, running, watching


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def broken(args: dict[str, Any]) -> str:
    raise RuntimeError("a bug in the handler")


async def test_refusals_are_one_line_and_bugs_keep_their_traceback(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    connection = MqttConnection(fast_settings(broker.port))
    tools = registry(
        [{**SET_LIGHT, "rate_limit": 3}],
        mqtt=connection,
        extra=(ToolSpec("buggy", "a tool with a bug", broken),),
    )
    refusals: list[tuple[dict[str, Any], str | None]] = [
        # An injection attempt: the argument would leave its topic level.
        ({"room": "kitchen/../../door\nlock", "on": True}, "may not contain '/'"),
        # A schema violation.
        ({"room": "kitchen", "on": "yes"}, "invalid arguments: on: 'yes' is not of type"),
        # A huge argument is quoted, bounded.
        ({"room": "x" * 10_000 + "/", "on": True}, "may not contain '/'"),
        # The third call the guard lets through (refused ones count), then one over the limit.
        ({"room": "kitchen", "on": True}, None),
        ({"room": "hall", "on": False}, "may run 3 times a minute"),
    ]
    caplog.set_level(logging.INFO)
    async with running(connection), watching(broker.port, "home/#") as inbox:
        for args, reason in refusals:
            caplog.clear()
            outcome = await tools.call("set_light", args)
            if reason is None:
                assert outcome.ok, outcome.payload
                continue
            assert not outcome.ok
            [line] = warnings_of(caplog)
            message = line.getMessage()
            assert line.exc_info is None, message
            assert message.startswith("tool set_light refused {"), message
            assert reason in message, message
            assert "\n" not in message
            assert len(message) < ARGS_EXCERPT_CHARS + 200, len(message)
        published = await inbox.nothing_but_marker()
    assert [topic for topic, _, _ in inbox.messages if topic.startswith("home/")] == [
        "home/kitchen/light/set"
    ], published

    caplog.clear()
    outcome = await tools.call("buggy", {})
    assert not outcome.ok
    [line] = warnings_of(caplog)
    assert line.exc_info is not None  # a real error keeps its traceback
