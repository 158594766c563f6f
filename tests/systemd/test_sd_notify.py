"""``pi-live-voice run`` as systemd sees it: READY, STATUS, WATCHDOG and STOPPING messages."""

from __future__ import annotations

import asyncio
import itertools
import signal
import statistics
import time
from pathlib import Path

from tests.conftest import EmulatorFactory
from tests.systemd.conftest import (
    LIGHT_ON,
    NotifySocket,
    daemon_environ,
    fifo_mic,
    running_daemon,
    write_config,
)

WATCHDOG_S = 1.0  # systemd's WatchdogSec for the test: a check every half second
SCENARIO = {
    "turns": [{"heard": "Turn on the kitchen light.", "tool_calls": [LIGHT_ON], "reply": "Done."}]
}


async def test_ready_status_watchdog_and_stopping(
    emulator_factory: EmulatorFactory,
    notify_socket: NotifySocket,
    request_speech: bytes,
    tmp_path: Path,
) -> None:
    async with emulator_factory(SCENARIO, pace=0.2) as em:
        config = write_config(tmp_path / "config.toml", em, ready_timeout_s=20)
        environ = daemon_environ(
            tmp_path,
            NOTIFY_SOCKET=str(notify_socket.path),
            WATCHDOG_USEC=str(int(WATCHDOG_S * 1e6)),
        )
        with fifo_mic(tmp_path) as mic, running_daemon(config, environ, tmp_path) as daemon:
            await notify_socket.wait_for(lambda: bool(notify_socket.lines("READY=1")), 30)
            assert notify_socket.lines("STATUS=")[-1] == "STATUS=idle"

            # Pings every half period while audio flows (a ping withheld for a late wake-up on
            # a loaded machine is the watchdog working, so the median is what must be right).
            await notify_socket.wait_for(lambda: len(notify_socket.times("WATCHDOG=1")) >= 5, 10)
            pings = notify_socket.times("WATCHDOG=1")
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert min(gaps) > 0.3, gaps
            assert 0.4 < statistics.median(gaps) < 0.7, gaps

            # SIGHUP reloads: RELOADING=1, then READY=1 again.
            daemon.proc.send_signal(signal.SIGHUP)
            await notify_socket.wait_for(lambda: len(notify_socket.lines("READY=1")) == 2, 10)
            assert notify_socket.lines("RELOADING=1") == ["RELOADING=1"]

            # The tool call shows in the status, then the device goes back to idle.
            mic.feeder.say(request_speech)
            await notify_socket.wait_for(
                lambda: "STATUS=tool-pending: set_output" in notify_socket.lines("STATUS="), 30
            )
            await notify_socket.wait_for(
                lambda: notify_socket.lines("STATUS=")[-1] == "STATUS=idle", 30
            )
            statuses = notify_socket.lines("STATUS=")
            turn = statuses[statuses.index("STATUS=listening") :]
            assert turn[:3] == [
                "STATUS=listening",
                "STATUS=thinking",
                "STATUS=tool-pending: set_output",
            ]
            assert "STATUS=speaking" in turn

            # A capture thread stuck in read(): the pings stop.
            mic.hang()
            hung_at = time.monotonic()
            await asyncio.sleep(3 * WATCHDOG_S)
            late = [t for t in notify_socket.times("WATCHDOG=1") if t > hung_at + WATCHDOG_S]
            assert late == [], "pings went on with the capture thread stuck"

            status = await asyncio.to_thread(daemon.terminate)
            await notify_socket.wait_for(lambda: bool(notify_socket.lines("STOPPING=1")), 5)
            output = daemon.output()
    assert status == 0, output
    assert "withholding watchdog pings: no audio frames" in output
    assert notify_socket.lines("MONOTONIC_USEC=")
