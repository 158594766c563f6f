"""Closures this client decides itself (a frame over its size limit) are named as such."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import EmulatorFactory
from tests.services.live.harness import Recorder, new_session, running, speak, tool

# Over the websockets client's 1 MiB default message limit, the SDK's connection's limit.
HUGE = "x" * (2 * 2**20)


async def noop(args: dict[str, Any]) -> str:
    return "ok"


async def test_a_frame_over_the_limit_is_reported_as_what_it_is(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = {"turns": [{"tool_calls": [{"name": "store", "args": {"blob": HUGE}}]}]}
    caplog.set_level(logging.WARNING, logger="services.live.session")
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [tool("store", noop, blob={"type": "string"})], rec)
        async with running(session):
            await speak(session)
            await rec.wait_for(lambda: len(session.closures) >= 1)
    report = session.closures[0]
    assert report.code == 1009, report.summary()
    assert "limit" in report.cause, report.cause
    assert "network down" not in report.cause
    assert "closed by this device" in report.cause
    assert "1009" in caplog.text
    assert "network down" not in caplog.text
