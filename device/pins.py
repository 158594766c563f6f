"""The pin driver: which gpiozero pin factory the button, LEDs and outputs are built on.

On a Pi that is lgpio. It talks to the kernel's ``/dev/gpiochip*`` character devices, so it
works alike on the Pi 4 (BCM2711) and the Pi 5 (RP1), on Raspberry Pi OS bookworm and trixie,
32- and 64-bit. gpiozero's own fall-backs are refused on purpose: RPi.GPIO and pigpio do not
know the Pi 5, and its native factory detects edges through ``/sys/class/gpio``, which the unit
makes read-only. ``mock`` gives gpiozero's mock pins, for a bench without a header.

A driver that cannot be had is a :class:`PinDriverError` whose text is one line naming the
cause and the fix: restarting cannot mend it, so the daemon exits with 78 instead.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FACTORIES = ("lgpio", "mock")
DEFAULT_FACTORY = "lgpio"
# gpiozero's own variable; the unit sets it, so gpiozero and the daemon agree.
FACTORY_VARIABLE = "GPIOZERO_PIN_FACTORY"
MOCK_HINT = 'set [gpio] pin_factory = "mock" to run without pins'


class PinDriverError(Exception):
    """No usable pin driver; ``str()`` is one line naming the cause and the fix."""


@dataclass(frozen=True)
class Chip:
    """One ``/dev/gpiochip*`` and whether this process may open it for reading and writing."""

    path: Path
    group: str
    mode: int
    usable: bool

    def describe(self) -> str:
        """``/dev/gpiochip0 (group gpio, mode 0660): usable``, or why not."""
        verdict = "usable" if self.usable else "no permission for this user"
        return f"{self.path} (group {self.group}, mode {self.mode:04o}): {verdict}"


def gpio_chips(dev: Path = Path("/dev")) -> list[Chip]:
    """The GPIO character devices of this machine, in number order."""
    chips = []
    for path in sorted(dev.glob("gpiochip*"), key=lambda p: (len(p.name), p.name)):
        try:
            info = path.stat()
        except OSError:
            continue
        try:
            group = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            group = str(info.st_gid)
        usable = os.access(path, os.R_OK | os.W_OK)
        chips.append(Chip(path, group, stat.S_IMODE(info.st_mode), usable))
    return chips


def board() -> str:
    """The board as gpiozero names it (``Raspberry Pi 5B rev 1.0``), or why it cannot."""
    from gpiozero.exc import PinUnknownPi
    from gpiozero.pins.local import get_pi_revision
    from gpiozero.pins.pi import PiBoardInfo

    try:
        revision = get_pi_revision()
    except (PinUnknownPi, OSError, ValueError):
        return "not a Raspberry Pi (no board revision in /proc/device-tree or /proc/cpuinfo)"
    try:
        info = PiBoardInfo.from_revision(revision)
    except PinUnknownPi:
        return f"unknown board revision {revision:x}"
    return f"Raspberry Pi {info.model} rev {info.pcb_revision}"


def choose_factory(configured: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The factory to build: ``[gpio] pin_factory``, else ``GPIOZERO_PIN_FACTORY``, else lgpio."""
    if configured is not None:
        return configured
    chosen = environ.get(FACTORY_VARIABLE, "").strip() or DEFAULT_FACTORY
    if chosen not in FACTORIES:
        raise PinDriverError(
            f"{FACTORY_VARIABLE}={chosen[:40]!r} is not a pin driver this daemon uses: "
            f"set it to one of {', '.join(FACTORIES)}, or unset it"
        )
    return chosen


def open_factory(name: str) -> Any:
    """Build the gpiozero pin factory ``name``; raises :class:`PinDriverError`."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if name != "lgpio":
        raise PinDriverError(f"unknown pin driver {name!r}: use one of {', '.join(FACTORIES)}")
    try:
        import lgpio
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError as exc:
        raise PinDriverError(
            f"no GPIO driver on {board()}: the lgpio module cannot be imported ({exc}); "
            f"reinstall with `make install`, which builds it where no wheel exists, or {MOCK_HINT}"
        ) from exc
    from gpiozero.exc import PinUnknownPi

    try:
        return LGPIOFactory()
    except PinUnknownPi as exc:
        raise PinDriverError(f"lgpio: this machine is {board()}; {MOCK_HINT}") from exc
    except lgpio.error as exc:
        raise PinDriverError(_chip_problem(str(exc).strip("'\""))) from exc


def _chip_problem(error: str) -> str:
    """Why lgpio could not open a chip, read from the devices themselves."""
    chips = gpio_chips()
    if not chips:
        return (
            f"lgpio could not open a GPIO chip ({error}): there is no /dev/gpiochip* "
            "(a kernel without the GPIO character device, or a container that does not pass "
            f"it in); {MOCK_HINT}"
        )
    denied = [c for c in chips if not c.usable]
    if denied:
        return (
            f"lgpio could not open a GPIO chip ({error}): no permission on {denied[0].describe()}; "
            "run the daemon in that group (the unit adds group gpio; `make install` gives "
            "group gpio the chips by a udev rule where the system has none)"
        )
    return f"lgpio could not open a GPIO chip ({error}); {MOCK_HINT}"


def describe_factory(name: str, factory: Any) -> str:
    """One line for the journal: which driver the parts are built on."""
    if name == "lgpio":
        return f"lgpio on /dev/gpiochip{factory.chip}, {board()}"
    return "mock pins (no GPIO header is driven)"


def print_gpio(environ: Mapping[str, str] = os.environ) -> None:
    """``pi-live-voice devices``: the board, its GPIO chips and the driver the daemon would use."""
    print("GPIO:", flush=True)
    print(f"  board: {board()}")
    chips = gpio_chips()
    for chip in chips:
        print(f"  {chip.describe()}")
    if not chips:
        print("  no /dev/gpiochip* on this machine")
    try:
        name = choose_factory(None, environ)
        factory = open_factory(name)
    except PinDriverError as exc:
        print(f"  pin factory: cannot be had: {exc}")
        return
    try:
        print(f"  pin factory: {describe_factory(name, factory)}")
    finally:
        factory.close()
