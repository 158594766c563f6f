"""SIGHUP with a config that no longer loads: one line, the running config kept, no traceback."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EmulatorFactory
from tests.systemd.conftest import Running, daemon_environ, fifo_mic, running_daemon, write_config

SCENARIO = {"turns": [{"reply": "ok"}]}
POLL_S = 0.05


async def wait_for_output(daemon: Running, text: str, count: int = 1, within: float = 20) -> None:
    """Until ``text`` appears ``count`` times in the daemon's stderr (it is a file: polled)."""
    deadline = time.monotonic() + within
    while daemon.output().count(text) < count:
        assert daemon.proc.poll() is None, daemon.output()
        assert time.monotonic() < deadline, f"no {text!r} within {within} s:\n{daemon.output()}"
        await asyncio.sleep(POLL_S)


async def test_an_unloadable_config_is_refused_in_one_line_and_the_daemon_runs_on(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    breakages: dict[str, Callable[[Path], object]] = {
        "binary": lambda path: path.write_bytes(bytes(range(256)) * 4),
        "nested past the recursion limit": lambda path: path.write_text(
            "x = " + "[" * 5000 + "]" * 5000
        ),
        "deleted": lambda path: path.unlink(),
    }
    async with emulator_factory(SCENARIO) as em:
        config = write_config(tmp_path / "config.toml", em)
        good = config.read_text()
        with fifo_mic(tmp_path), running_daemon(config, daemon_environ(tmp_path), tmp_path) as d:
            await wait_for_output(d, "state: idle")
            for n, breaking in enumerate(breakages.values(), start=1):
                breaking(config)
                d.proc.send_signal(signal.SIGHUP)
                await wait_for_output(d, "reload refused", count=n)
            config.write_text(good)
            d.proc.send_signal(signal.SIGHUP)
            await wait_for_output(d, "config reloaded")
            assert d.proc.poll() is None
            output = d.output()
            assert await asyncio.to_thread(d.terminate) == 0, output

    refused = [line for line in output.splitlines() if "reload refused" in line]
    assert len(refused) == len(breakages), output
    for line in refused:
        assert f"reload refused: {config}: " in line, line
    assert "not UTF-8" in refused[0]
    assert "nested too deeply" in refused[1]
    assert "no such file" in refused[2]
    assert "Traceback" not in output
    assert "Exception in callback" not in output
