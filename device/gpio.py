"""Button, LEDs and GPIO outputs, built with gpiozero on an injected pin factory.

The pin factory is always passed in: a real one (lgpio) on a Pi, gpiozero's ``MockFactory``
in tests and the demo. Button callbacks arrive on gpiozero's threads and are handed to the
event loop; everything else is called from the loop and returns at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero import LED, PWMLED, Button, OutputDevice, PWMOutputDevice
from gpiozero.exc import PinPWMUnsupported

from device.events import (
    ButtonMode,
    ButtonPressed,
    ButtonReleased,
    Event,
    LongPress,
    MuteSwitched,
    State,
)
from device.gpio_settings import ButtonSettings, LedSettings, MuteSettings, OutputSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pattern:
    """How the status LED shows a state: steady ``level``, or blinking/pulsing."""

    style: str  # "steady", "blink" or "pulse"
    level: float = 1.0
    on_s: float = 0.0
    off_s: float = 0.0


PATTERNS: dict[State, Pattern] = {
    State.IDLE: Pattern("steady", level=0.05),
    State.LISTENING: Pattern("steady", level=1.0),
    State.THINKING: Pattern("blink", on_s=0.15, off_s=0.15),
    State.SPEAKING: Pattern("pulse", on_s=0.5, off_s=0.5),
    State.TOOL_PENDING: Pattern("blink", on_s=0.15, off_s=0.15),
    State.RECONNECTING: Pattern("blink", on_s=0.5, off_s=0.5),
    State.ERROR: Pattern("blink", on_s=0.1, off_s=0.9),
}
# A non-blocking tool call is running: a long-on blink, unlike thinking's fast one. Shown only
# where the device would otherwise look idle or thinking; listening and speaking come first.
BACKGROUND_TOOL = Pattern("blink", on_s=0.6, off_s=0.2)
# The microphone is muted: a short flash every three seconds, shown where the device would
# otherwise look idle (and above a running tool's pattern: privacy is the first thing to see).
MUTED = Pattern("blink", on_s=0.05, off_s=2.95)
_BACKGROUND_OVER = (State.IDLE, State.THINKING)


class StatusLed:
    """One LED showing the device state; PWM patterns where the pin allows them."""

    def __init__(self, pin: int, pwm: bool, factory: Any) -> None:
        self._led: LED | PWMLED
        self.showing: State | None = None
        self.pattern: Pattern | None = None
        self.pwm = False
        if pwm:
            try:
                self._led = PWMLED(pin, pin_factory=factory)
                self.pwm = True
            except PinPWMUnsupported:
                log.info("GPIO%d has no PWM: the status LED blinks instead of dimming", pin)
        if not self.pwm:
            self._led = LED(pin, pin_factory=factory)

    def show(self, state: State, background: bool = False, muted: bool = False) -> None:
        """Switch to ``state``'s pattern, or to the muted or running-tool one where it takes
        over."""
        self.showing = state
        pattern = PATTERNS[state]
        if background and state in _BACKGROUND_OVER:
            pattern = BACKGROUND_TOOL
        if muted and state is State.IDLE:
            pattern = MUTED
        self.pattern = pattern
        led = self._led
        if pattern.style == "steady":
            if isinstance(led, PWMLED):
                led.value = pattern.level
            elif pattern.level >= 0.5:
                led.on()
            else:
                led.off()
        elif pattern.style == "pulse" and isinstance(led, PWMLED):
            led.pulse(fade_in_time=pattern.on_s, fade_out_time=pattern.off_s)
        elif pattern.style == "pulse":
            led.on()
        else:
            led.blink(on_time=pattern.on_s, off_time=pattern.off_s)

    def close(self) -> None:
        """Switch off and release the pin."""
        self._led.off()
        self._led.close()


def _input(pin: int, pull_up: bool, bounce_ms: int, factory: Any, hold_s: float = 1.0) -> Button:
    """A contact on ``pin`` (the button, the mute switch); 0 ms of bounce turns debouncing off.
    ``hold_s`` matters only where a long press is listened for (gpiozero's default, 1 s)."""
    bounce_s = bounce_ms / 1000 or None
    return Button(pin, pull_up=pull_up, bounce_time=bounce_s, hold_time=hold_s, pin_factory=factory)


class TalkButton:
    """The talk button: press, release and long press become events on the loop."""

    def __init__(
        self,
        settings: ButtonSettings,
        factory: Any,
        post: Callable[[Event], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        assert settings.pin is not None
        self._button = _input(
            settings.pin, settings.pull_up, settings.bounce_ms, factory, settings.long_press_s
        )
        self._held = False

        def send(event: Event) -> None:
            loop.call_soon_threadsafe(post, event)

        def pressed() -> None:
            self._held = False
            send(ButtonPressed())

        def held() -> None:
            self._held = True
            send(LongPress())

        def released() -> None:
            # The release that ends a long press is part of the cancel, not a turn; in hold
            # mode every release ends the turn however long the press.
            if not self._held or settings.mode is ButtonMode.HOLD:
                send(ButtonReleased())
            self._held = False

        self._button.when_pressed = pressed
        self._button.when_held = held
        self._button.when_released = released

    def close(self) -> None:
        """Release the pin."""
        self._button.close()


class MuteSwitch:
    """The microphone's mute switch: closing and opening it become events on the loop."""

    def __init__(
        self,
        settings: MuteSettings,
        factory: Any,
        post: Callable[[Event], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        assert settings.pin is not None
        self._switch = _input(settings.pin, settings.pull_up, settings.bounce_ms, factory)
        self._switch.when_pressed = lambda: loop.call_soon_threadsafe(post, MuteSwitched(True))
        self._switch.when_released = lambda: loop.call_soon_threadsafe(post, MuteSwitched(False))
        if self._switch.is_pressed:
            # Closed at start: the device starts muted, before any frame is read.
            post(MuteSwitched(True))

    def close(self) -> None:
        """Release the pin."""
        self._switch.close()


class Outputs:
    """The GPIO outputs declared in the config; nothing else can be driven."""

    def __init__(self, settings: tuple[OutputSettings, ...], factory: Any) -> None:
        self.settings = {o.name: o for o in settings}
        self.devices: dict[str, OutputDevice | PWMOutputDevice] = {}
        for o in settings:
            if o.kind == "pwm":
                self.devices[o.name] = PWMOutputDevice(
                    o.pin, active_high=o.active_high, pin_factory=factory
                )
            else:
                self.devices[o.name] = OutputDevice(
                    o.pin, active_high=o.active_high, initial_value=False, pin_factory=factory
                )

    def described(self) -> dict[str, str]:
        """Each output's name and its description (its kind where it has none)."""
        return {name: o.description or o.kind for name, o in self.settings.items()}

    def state(self, name: str) -> dict[str, Any]:
        """The output's current state as the model sees it."""
        device = self.devices[name]
        value = float(device.value)
        if isinstance(device, PWMOutputDevice):
            return {"name": name, "on": value > 0, "level": round(value, 3)}
        return {"name": name, "on": value > 0}

    def set(self, name: str, on: bool | None, level: float | None) -> dict[str, Any]:
        """Drive output ``name``; returns its new state."""
        device = self.devices[name]
        if level is not None:
            if not isinstance(device, PWMOutputDevice):
                raise ValueError(f"{name} is a {self.settings[name].kind} and has no level; use on")
            device.value = level
        elif on is not None:
            device.value = 1.0 if on else 0.0
        else:
            raise ValueError("give on (true/false) or level (0 to 1)")
        log.info("output %s set: %s", name, self.state(name), extra={"TOOL_NAME": "set_output"})
        return self.state(name)

    def close(self) -> None:
        """Switch everything off and release the pins."""
        for device in self.devices.values():
            device.off()
            device.close()


class Indicators:
    """The status LED and the tool-pending LED, either of which may be absent."""

    def __init__(self, settings: LedSettings, factory: Any) -> None:
        self.status = (
            StatusLed(settings.status_pin, settings.status_pwm, factory)
            if settings.status_pin is not None
            else None
        )
        self.tool = (
            LED(settings.tool_pin, pin_factory=factory) if settings.tool_pin is not None else None
        )
        self._state = State.RECONNECTING
        self._background = False
        self._muted = False

    def show(self, state: State) -> None:
        """Show the device state."""
        self._state = state
        if self.status is not None:
            self.status.show(state, self._background, self._muted)

    def muted(self, on: bool) -> None:
        """The microphone is muted (or no longer): the status LED says so where idle."""
        if on != self._muted:
            self._muted = on
            self.show(self._state)

    def tool_running(self, on: bool) -> None:
        """A non-blocking call is running (or none is any more): the status LED says so; the
        tool-pending LED is for blocking calls only and stays as it is."""
        if on != self._background:
            self._background = on
            self.show(self._state)

    def tool_pending(self, on: bool) -> None:
        """Light or darken the tool-pending LED (synchronously: same loop step as the call)."""
        if self.tool is not None:
            self.tool.value = on

    def close(self) -> None:
        """Everything off."""
        if self.status is not None:
            self.status.close()
        if self.tool is not None:
            self.tool.off()
            self.tool.close()
