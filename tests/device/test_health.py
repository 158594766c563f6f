"""The health line: which counters it sums, and a reloaded interval applying at once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from device.audio import CaptureStats, PlaybackStats
from device.health import Fields, HealthReporter, health_fields, health_text
from device.uplink import UplinkStats


@dataclass
class Link:
    frames_sent: int = 40
    frames_offline: int = 3
    reconnects: int = 2
    tool_calls: int = 5


CAPTURE = CaptureStats(frames_in=100, dropped=1, gated=7, xruns=2, reopens=0)
PLAYBACK = PlaybackStats(
    chunks_in=9, frames_written=900, xruns=4, flushes=1, discarded_bytes=0, reopens=0
)


def test_each_loss_is_counted_once_under_its_name() -> None:
    fields = health_fields(
        CAPTURE,
        PLAYBACK,
        UplinkStats(dropped=10, gated=20, held=30),
        Link(),
        gated_by_session=11,
        tokens_today=1234,
        cost_today=0.123456,
    )
    assert fields["FRAMES_IN"] == 100
    assert fields["FRAMES_OUT"] == 40
    assert fields["DROPPED_FRAMES"] == 1 + 10 + 3
    assert fields["GATED_FRAMES"] == 7 + 11 + 20
    assert fields["HELD_FRAMES"] == 30
    assert fields["XRUNS"] == 2 + 4
    assert (fields["RECONNECTS"], fields["TOOL_CALLS"]) == (2, 5)
    assert fields["TOKENS_TODAY"] == 1234
    assert fields["COST_TODAY"] == 0.1235
    assert fields["RSS_MIB"] > 0  # this process's, read from /proc


def test_no_cost_without_prices() -> None:
    fields = health_fields(
        CAPTURE,
        PLAYBACK,
        UplinkStats(),
        Link(),
        gated_by_session=0,
        tokens_today=0,
        cost_today=None,
    )
    assert "COST_TODAY" not in fields


def test_the_line_says_the_status_then_every_field() -> None:
    text = health_text("listening", {"FRAMES_IN": 3, "RSS_MIB": 40.5})
    assert text == "health: listening; frames in 3, rss mib 40.5"


def test_a_report_carries_the_fields_and_the_state(caplog: pytest.LogCaptureFixture) -> None:
    reporter = HealthReporter(60, lambda: {"FRAMES_IN": 3}, lambda: "idle", lambda: "idle")
    with caplog.at_level(logging.INFO, logger="device.health"):
        assert reporter.report() == {"FRAMES_IN": 3}
    [record] = caplog.records
    assert record.getMessage() == "health: idle; frames in 3"
    assert (record.FRAMES_IN, record.LIVE_STATE) == (3, "idle")  # type: ignore[attr-defined]


async def test_a_shorter_interval_applies_without_waiting_out_the_old_one() -> None:
    reported = asyncio.Event()

    def fields() -> Fields:
        reported.set()
        return {}

    # An hour: without the change, no line would come within the test's time.
    reporter = HealthReporter(3600, fields, lambda: "idle", lambda: "idle")
    task = asyncio.create_task(reporter.run())
    try:
        await asyncio.sleep(0)  # the reporter is waiting out its hour
        assert not reported.is_set()
        reporter.set_interval(0.01)
        async with asyncio.timeout(30):
            await reported.wait()
        assert reporter.interval_s == 0.01
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
