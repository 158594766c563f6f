"""The daily budget on the whole daemon: past it no session opens, until a long press or the
next day; the answer that spent it is still heard to its end."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from device.events import State
from tests.daemon.conftest import BUTTON_PIN, Rig, RigFactory
from tests.daemon.test_daemon import assert_clean

# A dollar per thousand tokens: the first turn (about a hundred tokens) spends the budget.
PRICES = dict.fromkeys(("input_text", "input_audio", "output_text", "output_audio"), 1000.0)
BUDGET = {"prices": PRICES, "daily_budget": 0.01}
TWO_TURNS = {"turns": [{"reply": "Here is the first answer."}, {"reply": "And the second."}]}


def setups(rig: Rig) -> int:
    return len(rig.emulator.trace.select("in", kind="setup"))


def turns_completed(rig: Rig) -> int:
    return len(rig.emulator.trace.select("out", kind="serverContent.turnComplete"))


async def test_a_spent_budget_ends_the_session_after_the_answer_and_a_long_press_goes_on(
    rig_factory: RigFactory, request_speech: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.daemon")
    async with rig_factory(TWO_TURNS, mode="always", usage=BUDGET) as rig:
        rig.mic.say(request_speech)
        await rig.wait_state("error")
        assert turns_completed(rig) == 1
        assert "budget" in rig.daemon.status_line
        status_led = rig.daemon.indicators.status
        assert status_led is not None
        assert status_led.showing is State.ERROR
        # The answer that spent the budget was played, not flushed by the closing session.
        assert rig.daemon.sink.stats.chunks_in > 0
        assert rig.daemon.sink.stats.discarded_bytes == 0
        assert setups(rig) == 1
        why = [r for r in caplog.records if hasattr(r, "BUDGET_USD")]
        assert [r.levelno for r in why] == [logging.WARNING]
        assert "no session opens until tomorrow" in why[0].getMessage()

        button = rig.pin(BUTTON_PIN)
        button.drive_low()  # held past long_press_s: the override
        await rig.wait_for(lambda: setups(rig) == 2 and rig.daemon.machine.state is State.IDLE)
        button.drive_high()
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: turns_completed(rig) == 2)
        assert rig.daemon.budget is not None
        assert rig.daemon.budget.overridden_on == dt.date.today()
    assert_clean(rig)


async def test_a_spent_budget_opens_the_session_again_on_the_next_day(
    rig_factory: RigFactory, request_speech: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.daemon")
    # A second before midnight, and it stays that second until the test turns the day.
    now = [dt.datetime(2026, 12, 4, 23, 59, 59)]
    async with rig_factory(TWO_TURNS, mode="always", usage=BUDGET, clock=lambda: now[0]) as rig:
        rig.mic.say(request_speech)
        await rig.wait_state("error")
        assert setups(rig) == 1
        now[0] = dt.datetime(2026, 12, 5, 0, 0, 1)
        await rig.wait_for(lambda: setups(rig) == 2 and rig.daemon.machine.state is State.IDLE)
        assert rig.daemon.usage.on(now[0].date()).cost == 0
        assert any("a new day" in r.getMessage() for r in caplog.records)
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: turns_completed(rig) == 2)
    assert_clean(rig)
