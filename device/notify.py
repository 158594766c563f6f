"""systemd's view of the daemon: sd_notify messages and the watchdog.

:class:`SystemdSupervisor` tells systemd when start-up is over (``READY=1``), what the device
is doing (``STATUS=``), and when it reloads or stops. :class:`Watchdog` sends ``WATCHDOG=1``
only while the daemon is really working — the event loop wakes on time and the microphone
delivers frames — so a blocked loop or a stuck capture thread gets the service restarted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

import systemd.daemon as sd_daemon

from device.audio import CaptureStats

log = logging.getLogger(__name__)


class SystemdSupervisor:
    """The daemon's :class:`~device.daemon.Supervisor` under systemd (``Type=notify``).

    Without ``NOTIFY_SOCKET`` (started by hand) it tells nobody, like ``Unsupervised``.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))

    def _notify(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            sd_daemon.notify(message)
        except OSError as exc:
            # systemd went away or its socket is full: the device keeps working regardless.
            log.debug("sd_notify failed: %s", exc)

    def ready(self) -> None:
        """``READY=1``: start-up (or a reload) is over."""
        self._notify("READY=1")

    def status(self, text: str) -> None:
        """``STATUS=``: one line, whatever ``text`` holds."""
        self._notify("STATUS=" + " ".join(text.split()))

    def reloading(self) -> None:
        """``RELOADING=1``, with the clock reading systemd 253+ asks of reloads."""
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """``STOPPING=1``: shutdown begins."""
        self._notify("STOPPING=1")

    def watchdog(self) -> None:
        """``WATCHDOG=1``: still alive."""
        self._notify("WATCHDOG=1")


def capture_progress(stats: CaptureStats) -> int | None:
    """Frames captured so far; None while no microphone is open (it is being retried).

    A stalled microphone — it opened, then delivered no audio (end of file at full speed,
    empty reads, a stuck value) — is not "missing": the capture cannot work and a restart may
    mend a wedged driver, so its count, which no longer moves, withholds the pings until
    audio flows again, through the reopen attempts in between."""
    return stats.frames_in if stats.device_open or stats.stalled else None


def watchdog_period(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog period systemd asks of process ``pid``, in seconds; None if none."""
    usec = environ.get("WATCHDOG_USEC")
    owner = environ.get("WATCHDOG_PID")
    if not usec:
        return None
    try:
        period = int(usec) / 1e6
        # The variables may have been inherited from a parent that systemd watches.
        if owner and int(owner) != pid:
            return None
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, owner)
        return None
    return period if period > 0 else None


class WatchdogPolicy:
    """Decides at each wake-up whether the daemon has earned a ping.

    It checks every ``interval_s`` (half the watchdog period). A wake-up later than half an
    interval means the event loop is not keeping time (a blocking call, starvation); a
    frame count that has not moved since the last check means capture is stuck. Either one
    withholds the ping.

    A frame count of None means no microphone is open: the capture thread is retrying a
    missing device (and says so in the journal). That is the daemon doing its job, not a
    hang, so it earns pings — a restart would not bring back an unplugged microphone, and
    restarts in a row would soon hit the unit's start limit and leave it failed for good.
    """

    def __init__(self, interval_s: float, frames_in: int | None) -> None:
        self.interval_s = interval_s
        self.late_limit_s = interval_s / 2
        self._frames_in = frames_in

    def verdict(self, frames_in: int | None, slept_s: float) -> str | None:
        """None to ping; otherwise why not. ``slept_s`` is how long the sleep really took."""
        advanced = frames_in is None or frames_in != self._frames_in
        self._frames_in = frames_in
        late = slept_s - self.interval_s
        if late > self.late_limit_s:
            return f"the event loop woke {late:.2f} s late"
        if not advanced:
            return f"no audio frames from the microphone for {slept_s:.1f} s (capture stuck)"
        return None


class Watchdog:
    """Pings systemd's watchdog while :class:`WatchdogPolicy` says the daemon is healthy."""

    def __init__(
        self, period_s: float, frames_in: Callable[[], int | None], ping: Callable[[], None]
    ):
        self.period_s = period_s
        self._frames_in = frames_in
        self._ping = ping

    async def run(self) -> None:
        """Check and ping every half period until cancelled."""
        loop = asyncio.get_running_loop()
        policy = WatchdogPolicy(self.period_s / 2, self._frames_in())
        withheld = False
        while True:
            started = loop.time()
            await asyncio.sleep(policy.interval_s)
            why = policy.verdict(self._frames_in(), loop.time() - started)
            if why is None:
                self._ping()
                if withheld:
                    log.info("watchdog pings resumed")
                    withheld = False
            elif not withheld:
                # Once per stretch: the next line of interest is the restart, or the resumption.
                log.warning(
                    "withholding watchdog pings: %s; systemd restarts the daemon if this "
                    "lasts %.0f s",
                    why,
                    self.period_s,
                )
                withheld = True
