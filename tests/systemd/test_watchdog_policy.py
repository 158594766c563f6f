"""The watchdog's decision (pure), and its loop on a real event loop with a recorded ping."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from device.notify import SystemdSupervisor, Watchdog, WatchdogPolicy, watchdog_period


def test_pings_while_frames_flow_and_the_loop_is_on_time() -> None:
    policy = WatchdogPolicy(interval_s=10.0, frames_in=0)
    assert policy.verdict(frames_in=500, slept_s=10.01) is None
    assert policy.verdict(frames_in=1000, slept_s=14.9) is None  # late, but within half


def test_withholds_when_no_frame_arrived_since_the_last_check() -> None:
    policy = WatchdogPolicy(interval_s=10.0, frames_in=0)
    assert policy.verdict(frames_in=500, slept_s=10.0) is None
    why = policy.verdict(frames_in=500, slept_s=10.0)
    assert why is not None
    assert "capture stuck" in why
    # Frames again: pings again.
    assert policy.verdict(frames_in=501, slept_s=10.0) is None


def test_withholds_when_the_loop_woke_late_even_with_frames() -> None:
    policy = WatchdogPolicy(interval_s=10.0, frames_in=0)
    why = policy.verdict(frames_in=900, slept_s=16.0)
    assert why is not None
    assert "6.00 s late" in why


def test_a_missing_microphone_being_retried_is_no_hang() -> None:
    policy = WatchdogPolicy(interval_s=10.0, frames_in=None)
    assert policy.verdict(frames_in=None, slept_s=10.0) is None
    assert policy.verdict(frames_in=None, slept_s=10.0) is None
    # Plugged back in: the first count after the gap is progress, a frozen one is not.
    assert policy.verdict(frames_in=40, slept_s=10.0) is None
    assert policy.verdict(frames_in=40, slept_s=10.0) is not None
    # A blocked loop is a hang whether or not a microphone is open.
    assert policy.verdict(frames_in=None, slept_s=16.0) is not None


def test_a_counter_that_never_started_is_stuck_from_the_first_check() -> None:
    policy = WatchdogPolicy(interval_s=1.0, frames_in=0)
    assert policy.verdict(frames_in=0, slept_s=1.0) is not None


@pytest.mark.parametrize(
    ("environ", "pid", "period"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 7, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),  # inherited
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "soon"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_period_from_the_environment(
    environ: dict[str, str], pid: int, period: float | None
) -> None:
    assert watchdog_period(environ, pid) == period


def test_supervisor_without_notify_socket_tells_nobody() -> None:
    supervisor = SystemdSupervisor({})
    assert not supervisor.enabled
    supervisor.ready()  # no socket, no error
    supervisor.status("listening")


class Pings:
    """Records pings and lets a test wait for the next one, with a bound."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._new = asyncio.Event()

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self._new.set()

    async def wait(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.times) < count:
                self._new.clear()
                await self._new.wait()


async def test_watchdog_loop_stops_pinging_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="device.notify")
    frames = [0]
    flowing = True

    def count() -> int:
        if flowing:
            frames[0] += 10
        return frames[0]

    pings = Pings()
    task = asyncio.create_task(Watchdog(0.1, count, pings).run())
    try:
        await pings.wait(3)
        flowing = False
        stalled_at = len(pings.times)
        await asyncio.sleep(0.4)  # eight checks at 50 ms
        # At most the check in flight when the frames stopped still pings.
        assert len(pings.times) <= stalled_at + 1
        flowing = True
        await pings.wait(len(pings.times) + 1)
    finally:
        task.cancel()
    warnings = [r for r in caplog.records if "withholding watchdog pings" in r.getMessage()]
    assert len(warnings) == 1
    assert "capture stuck" in warnings[0].getMessage()
    assert any("watchdog pings resumed" in r.getMessage() for r in caplog.records)


async def test_a_blocked_loop_loses_its_ping(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="device.notify")
    frames = iter(range(0, 1_000_000, 10))
    pings = Pings()
    task = asyncio.create_task(Watchdog(0.2, lambda: next(frames), pings).run())
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.4)  # noqa: ASYNC251 - the blocking call on the loop under test
        blocked_until = time.monotonic()
        await pings.wait(len(pings.times) + 1)
    finally:
        task.cancel()
    # The wake-up right after the block was withheld; the next one, on time, pinged.
    assert pings.times[-1] >= blocked_until + 0.05
    assert any("woke" in r.getMessage() and "late" in r.getMessage() for r in caplog.records)
