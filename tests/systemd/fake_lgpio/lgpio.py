"""The lgpio extension, faked at its narrowest seam for a machine with no ``/dev/gpiochip*``.

This machine has no GPIO chip the real lgpio could open, so the tests that build the daemon's
button and LEDs on gpiozero's (real) lgpio factory put this module first on ``PYTHONPATH``. It
models one chip's lines with the flags lgpio reports, and appends every call that claims or
drives a line to the JSON-lines file named by ``FAKE_LGPIO_LOG``. Only the calls gpiozero's
``LGPIOFactory`` and ``LGPIOPin`` make are here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

SET_ACTIVE_LOW = 4
SET_PULL_UP = 32
SET_PULL_DOWN = 64
SET_PULL_NONE = 128
SET_BIAS_PULL_UP = SET_PULL_UP
SET_BIAS_PULL_DOWN = SET_PULL_DOWN
SET_BIAS_DISABLE = SET_PULL_NONE
RISING_EDGE = 1
FALLING_EDGE = 2
BOTH_EDGES = 3
_IS_OUT = 1 << 1
_LINE_FLAGS = SET_ACTIVE_LOW | SET_PULL_UP | SET_PULL_DOWN | SET_PULL_NONE
_IS_INPUT = 1 << 8
_IS_OUTPUT = 1 << 9
_IS_ALERT = 1 << 10

_modes: dict[int, int] = {}
_levels: dict[int, int] = {}


class error(Exception):
    """What lgpio raises."""


def _log(call: str, **fields: Any) -> None:
    with open(os.environ["FAKE_LGPIO_LOG"], "a") as out:
        out.write(json.dumps({"call": call, **fields}) + "\n")


def gpiochip_open(chip: int) -> int:
    _log("gpiochip_open", chip=chip)
    return 7


def gpiochip_close(handle: int) -> None:
    _log("gpiochip_close")


def gpio_claim_input(handle: int, gpio: int, flags: int = 0) -> None:
    _modes[gpio] = _IS_INPUT | (flags & _LINE_FLAGS)
    _levels[gpio] = 1 if flags & SET_PULL_UP else 0
    _log("claim_input", gpio=gpio, pull_up=bool(flags & SET_PULL_UP))


def gpio_claim_output(handle: int, gpio: int, flags: int = 0, level: int = 0) -> None:
    _modes[gpio] = _IS_OUTPUT | _IS_OUT | (flags & _LINE_FLAGS)
    _levels[gpio] = level
    _log("claim_output", gpio=gpio)


def gpio_claim_alert(
    handle: int, gpio: int, edges: int, flags: int = 0, notify: int | None = None
) -> None:
    _modes[gpio] = _IS_INPUT | _IS_ALERT | (flags & _LINE_FLAGS)
    _log("claim_alert", gpio=gpio, edges=edges)


def gpio_free(handle: int, gpio: int) -> None:
    _modes.pop(gpio, None)


def gpio_get_mode(handle: int, gpio: int) -> int:
    return _modes.get(gpio, 0)


def gpio_read(handle: int, gpio: int) -> int:
    return _levels.get(gpio, 0)


def gpio_write(handle: int, gpio: int, level: int) -> None:
    _levels[gpio] = int(level)
    _log("write", gpio=gpio, level=int(level))


def gpio_set_debounce_micros(handle: int, gpio: int, micros: int) -> None:
    _log("debounce", gpio=gpio, micros=micros)


def tx_pwm(handle: int, gpio: int, frequency: float, duty: float, *_: int) -> None:
    _log("pwm", gpio=gpio, frequency=frequency, duty=duty)


class _Callback:
    def cancel(self) -> None:
        """No thread to stop: nothing ever drives an edge here."""


def callback(handle: int, gpio: int, edges: int, func: Callable[..., None]) -> _Callback:
    _log("callback", gpio=gpio, edges=edges)
    return _Callback()
