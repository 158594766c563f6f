"""The pin driver on the default path: what the daemon does on a Pi with and without lgpio.

A Pi is simulated by a ``/proc/cpuinfo`` with a board revision, bind-mounted over the real one
in a mount namespace of the daemon's own (root only); gpiozero reads the board from there.
The daemon runs as systemd runs it, without ``GPIOZERO_PIN_FACTORY=mock``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from device import pins
from tests.conftest import EmulatorFactory
from tests.systemd.conftest import (
    DAEMON,
    daemon_environ,
    fifo_mic,
    running_daemon,
    wait_for_output,
    write_config,
)

FAKES = Path(__file__).with_name("fake_lgpio")
BOARDS = {
    "Pi 5": ("d04170", "Raspberry Pi 5B rev 1.0"),
    "Pi 4": ("c03111", "Raspberry Pi 4B rev 1.1"),
}
IDLE: dict[str, list[object]] = {"turns": []}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root")


def as_pi(revision: str, tmp_path: Path, command: list[str]) -> list[str]:
    """``command`` in a mount namespace whose ``/proc/cpuinfo`` names board ``revision``."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nHardware\t: BCM2835\nRevision\t: {revision}\n")
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(cpuinfo), *command,
    ]  # fmt: skip


def default_path_environ(tmp_path: Path, driver: Path | None = None) -> dict[str, str]:
    """The daemon's environment with gpiozero left to its default, and ``driver`` (a folder
    holding an ``lgpio`` module) first on the import path."""
    environ = daemon_environ(tmp_path)
    environ.pop(pins.FACTORY_VARIABLE)
    if driver is not None:
        environ["PYTHONPATH"] = str(driver)
    environ["FAKE_LGPIO_LOG"] = str(tmp_path / "lgpio.jsonl")
    return environ


def refused(command: list[str], environ: dict[str, str]) -> tuple[int, list[str]]:
    """Run a daemon that should not start: its exit status and its ``pi-live-voice:`` lines."""
    done = subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, [
        line for line in done.stderr.splitlines() if line.startswith("pi-live-voice:")
    ]


@needs_root
@pytest.mark.parametrize("board", sorted(BOARDS))
async def test_a_pi_without_lgpio_exits_78_naming_the_missing_driver(
    emulator_factory: EmulatorFactory, tmp_path: Path, board: str
) -> None:
    revision, name = BOARDS[board]
    async with emulator_factory(IDLE) as em:
        config = write_config(tmp_path / "config.toml", em)
        command = as_pi(revision, tmp_path, [str(DAEMON), "run", "--config", str(config)])
        environ = default_path_environ(tmp_path, FAKES / "absent")
        status, lines = await asyncio.to_thread(refused, command, environ)
    assert status == 78
    [line] = lines
    assert line.startswith(f"pi-live-voice: no GPIO driver on {name}: the lgpio module cannot ")
    assert "make install" in line
    assert 'pin_factory = "mock"' in line


@needs_root
async def test_a_pi_whose_kernel_offers_no_gpio_chip_exits_78_naming_it(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # The real lgpio: this machine has no /dev/gpiochip*, as a container that does not pass
    # the chips in.
    assert not pins.gpio_chips()
    async with emulator_factory(IDLE) as em:
        config = write_config(tmp_path / "config.toml", em)
        command = as_pi(BOARDS["Pi 5"][0], tmp_path, [str(DAEMON), "run", "--config", str(config)])
        status, lines = await asyncio.to_thread(refused, command, default_path_environ(tmp_path))
    assert status == 78
    assert lines == [
        "pi-live-voice: lgpio could not open a GPIO chip (can not open gpiochip): there is no "
        "/dev/gpiochip* (a kernel without the GPIO character device, or a container that does "
        'not pass it in); set [gpio] pin_factory = "mock" to run without pins'
    ]


async def test_a_machine_that_is_no_pi_exits_78_pointing_at_mock_pins(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    assert pins.board().startswith("not a Raspberry Pi")  # this x86 machine
    async with emulator_factory(IDLE) as em:
        config = write_config(tmp_path / "config.toml", em)
        command = [str(DAEMON), "run", "--config", str(config)]
        status, lines = await asyncio.to_thread(refused, command, default_path_environ(tmp_path))
    assert status == 78
    assert lines == [
        "pi-live-voice: lgpio: this machine is not a Raspberry Pi (no board revision in "
        '/proc/device-tree or /proc/cpuinfo); set [gpio] pin_factory = "mock" to run without pins'
    ]


def lines_of(log: Path) -> list[dict[str, object]]:
    """The fake driver's calls so far."""
    text = log.read_text() if log.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


@needs_root
async def test_on_a_pi_5_the_button_and_leds_are_built_on_lgpio(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    environ = default_path_environ(tmp_path, FAKES)
    async with emulator_factory(IDLE) as em:
        config = write_config(tmp_path / "config.toml", em, health_interval_s=1)
        with (
            fifo_mic(tmp_path),
            running_daemon(
                config, environ, tmp_path, lambda c: as_pi(BOARDS["Pi 5"][0], tmp_path, c)
            ) as daemon,
        ):
            # The button is built once the session is up, so the health line is the last.
            await asyncio.to_thread(
                wait_for_output, daemon, "GPIO: lgpio on /dev/gpiochip0, Raspberry Pi 5B rev 1.0"
            )
            await asyncio.to_thread(wait_for_output, daemon, "health:")
            assert await asyncio.to_thread(daemon.terminate) == 0, daemon.output()
    calls = lines_of(Path(environ["FAKE_LGPIO_LOG"]))
    assert calls[0] == {"call": "gpiochip_open", "chip": 0}
    outputs = {c["gpio"] for c in calls if c["call"] == "claim_output"}
    assert outputs == {5, 22, 27}  # the light, the status LED, the tool-pending LED
    assert {"call": "claim_input", "gpio": 17, "pull_up": True} in calls  # the button
    assert any(c["call"] == "callback" and c["gpio"] == 17 for c in calls)  # its edges
    assert calls[-1] == {"call": "gpiochip_close"}
    assert "Traceback" not in daemon.output()


@needs_root
def test_devices_lists_the_board_and_the_driver_it_would_use(tmp_path: Path) -> None:
    environ = default_path_environ(tmp_path, FAKES)
    command = as_pi(BOARDS["Pi 4"][0], tmp_path, [str(DAEMON), "devices"])
    done = subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=60, check=True
    )
    gpio = done.stdout[done.stdout.index("GPIO:") :].splitlines()
    assert gpio == [
        "GPIO:",
        "  board: Raspberry Pi 4B rev 1.1",
        "  no /dev/gpiochip* on this machine",
        "  pin factory: lgpio on /dev/gpiochip0, Raspberry Pi 4B rev 1.1",
    ]


def test_the_config_then_gpiozero_s_variable_then_lgpio_choose_the_driver() -> None:
    assert pins.choose_factory("mock", {"GPIOZERO_PIN_FACTORY": "lgpio"}) == "mock"
    assert pins.choose_factory(None, {"GPIOZERO_PIN_FACTORY": "mock"}) == "mock"
    assert pins.choose_factory(None, {}) == "lgpio"
    with pytest.raises(pins.PinDriverError, match=r"^GPIOZERO_PIN_FACTORY='native' is not"):
        pins.choose_factory(None, {"GPIOZERO_PIN_FACTORY": "native"})
