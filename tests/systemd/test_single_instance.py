"""Two daemons on one config: the second says who runs and exits 69, which the unit does not
restart; the first runs on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from device.instance import EX_UNAVAILABLE, lock_path
from tests.conftest import EmulatorFactory
from tests.systemd.conftest import DAEMON, daemon_environ, fifo_mic, running_daemon, write_config
from tests.systemd.test_reload_refused import wait_for_output

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "pi-live-voice.service"


def run_another(config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``pi-live-voice run --config config`` to its end (bounded)."""
    return subprocess.run(
        [sys.executable, str(DAEMON), "run", "--config", str(config)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_second_daemon_on_the_same_config_exits_69_in_one_line(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    runtime = tmp_path / "runtime"
    environ = daemon_environ(tmp_path, RUNTIME_DIRECTORY=str(runtime))
    async with emulator_factory({"turns": [{"reply": "ok"}]}) as em:
        config = write_config(tmp_path / "config.toml", em)
        with fifo_mic(tmp_path), running_daemon(config, environ, tmp_path) as first:
            await wait_for_output(first, "state: idle")
            second = await asyncio.to_thread(run_another, config, environ)
            assert first.proc.poll() is None, first.output()
            # The same file by another name is the same config.
            link = tmp_path / "link.toml"
            link.symlink_to(config)
            third = await asyncio.to_thread(run_another, link, environ)
            assert await asyncio.to_thread(first.terminate) == 0, first.output()

    assert second.returncode == EX_UNAVAILABLE, second.stderr
    assert third.returncode == EX_UNAVAILABLE, third.stderr
    [line] = [x for x in second.stderr.splitlines() if x.startswith("pi-live-voice: ")]
    assert f"another pi-live-voice (PID {first.proc.pid}) is already running" in line
    assert str(config) in line
    assert "Traceback" not in second.stderr
    assert lock_path(config, environ).parent == runtime


def test_the_unit_does_not_restart_after_another_instance_refused() -> None:
    lines = UNIT.read_text().splitlines()
    [prevent] = [x for x in lines if x.startswith("RestartPreventExitStatus=")]
    assert str(EX_UNAVAILABLE) in prevent.split("=", 1)[1].split()
