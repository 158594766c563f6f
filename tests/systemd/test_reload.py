"""SIGHUP: what ``serve`` tells systemd before and after the first READY=1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from device.daemon import Daemon, serve
from tests.conftest import EmulatorFactory
from tests.systemd.conftest import (
    daemon_environ,
    fifo_mic,
    running_daemon,
    wait_for_output,
    write_config,
)


@dataclass
class Told:
    """A supervisor that records what it was told."""

    said: list[str] = field(default_factory=list)
    readied: asyncio.Event = field(default_factory=asyncio.Event)

    def ready(self) -> None:
        self.said.append("READY=1")
        self.readied.set()

    def status(self, text: str) -> None:
        self.said.append(f"STATUS={text}")

    def reloading(self) -> None:
        self.said.append("RELOADING=1")

    def stopping(self) -> None:
        self.said.append("STOPPING=1")


@dataclass
class StubSettings:
    ready_timeout_s: float = 30.0


@dataclass
class StubDaemon:
    """What ``serve`` uses of a daemon: ``run``, ``reload``, readiness and the status line."""

    supervisor: Told = field(default_factory=Told)
    settings: StubSettings = field(default_factory=StubSettings)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    status_line: str = "idle"
    reloads: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)
    reloaded: asyncio.Event = field(default_factory=asyncio.Event)

    def reload(self) -> list[str]:
        self.reloads += 1
        self.reloaded.set()
        return []

    async def run(self, stop: asyncio.Event) -> None:
        self.running.set()
        await stop.wait()


async def hangup(daemon: StubDaemon) -> None:
    """SIGHUP to this process (serve's handler takes it), then wait for the reload."""
    daemon.reloaded.clear()
    os.kill(os.getpid(), signal.SIGHUP)
    async with asyncio.timeout(5):
        await daemon.reloaded.wait()


async def test_a_reload_before_ready_reloads_without_telling_systemd() -> None:
    daemon = StubDaemon()
    task = asyncio.create_task(serve(cast(Daemon, daemon)))
    try:
        async with asyncio.timeout(5):
            await daemon.running.wait()  # the signal handlers are in place
        await hangup(daemon)
        assert daemon.reloads == 1
        assert daemon.supervisor.said == []  # no READY=1 before start-up is over

        daemon.ready.set()
        async with asyncio.timeout(5):
            await daemon.supervisor.readied.wait()
        await hangup(daemon)
        assert daemon.supervisor.said == ["READY=1", "RELOADING=1", "READY=1", "STATUS=idle"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def test_a_reloaded_health_interval_applies_at_once(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    async with emulator_factory({"turns": []}) as em:
        config = write_config(tmp_path / "config.toml", em, health_interval_s=3600)
        with fifo_mic(tmp_path), running_daemon(config, daemon_environ(tmp_path), tmp_path) as d:
            await asyncio.to_thread(wait_for_output, d, "state: idle")
            write_config(config, em, health_interval_s=1)
            d.proc.send_signal(signal.SIGHUP)
            # Before the reload the next health line was an hour away.
            await asyncio.to_thread(wait_for_output, d, "health:", 15)
            assert await asyncio.to_thread(d.terminate) == 0, d.output()
