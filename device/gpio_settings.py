"""The settings of the button, the LEDs and the outputs, next to the hardware that uses them.

Kept apart from :mod:`device.config` so that :mod:`device.gpio` imports no settings reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.events import ButtonMode


@dataclass(frozen=True)
class ButtonSettings:
    """The talk button; ``pin`` None means no button (open mic only)."""

    pin: int | None = 17
    pull_up: bool = True
    mode: ButtonMode = ButtonMode.PRESS
    bounce_ms: int = 30
    long_press_s: float = 1.5


@dataclass(frozen=True)
class MuteSettings:
    """The microphone's mute switch; ``pin`` None means none. Closed (pressed) is muted."""

    pin: int | None = None
    pull_up: bool = True
    bounce_ms: int = 30


@dataclass(frozen=True)
class LedSettings:
    """The status LED (PWM patterns where the pin allows) and the dedicated tool-pending LED."""

    status_pin: int | None = 22
    status_pwm: bool = True
    tool_pin: int | None = 27


@dataclass(frozen=True)
class OutputSettings:
    """A GPIO output the model may drive through the ``set_output`` tool."""

    name: str
    pin: int
    kind: str = "relay"
    active_high: bool = True
    description: str = ""
