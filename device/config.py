"""Configuration: a TOML file into frozen, validated settings.

Every key has a default except the model credentials, which never live in this file: the
API key comes from ``GEMINI_API_KEY``/``GOOGLE_API_KEY`` or from systemd's credentials
directory. An error names the file, the key and the reason; the command exits with 78
(``EX_CONFIG``) so systemd does not restart a daemon that cannot start.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from device.audio import CaptureSettings, PlaybackSettings
from device.echo import EchoMode, EchoSettings
from device.events import ButtonMode
from device.pins import FACTORIES
from device.vad import StartTrigger, VadSettings
from services.live.settings import LiveSettings
from services.tools.declarations import (
    SettingError,
    ToolDeclaration,
    parse_home_assistant,
    parse_mqtt,
    parse_tools,
    read_credential,
)
from services.tools.ha_device import HaDeviceSettings
from services.tools.home_assistant import HomeAssistantSettings
from services.tools.mqtt import MqttSettings

DEFAULT_PATH = Path("/etc/pi-live-voice/config.toml")
EX_CONFIG = 78
API_KEY_CREDENTIAL = "gemini-api-key"
OUTPUT_KINDS = ("relay", "led", "pwm")
# The GPIO tools' names; a [[tools]] entry may not take them.
GPIO_TOOL_NAMES = ("set_output", "get_outputs")
T = TypeVar("T")


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is the one-line message to print."""

    def __init__(self, path: Path | str, key: str, reason: str) -> None:
        super().__init__(f"{path}: {key}: {reason}" if key else f"{path}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ButtonSettings:
    """The talk button; ``pin`` None means no button (open mic only)."""

    pin: int | None = 17
    pull_up: bool = True
    mode: ButtonMode = ButtonMode.PRESS
    bounce_ms: int = 30
    long_press_s: float = 1.5


@dataclass(frozen=True)
class GpioSettings:
    """The pin driver. None leaves the choice to ``GPIOZERO_PIN_FACTORY``, then lgpio."""

    pin_factory: str | None = None


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


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    path: Path
    live: LiveSettings = field(default_factory=LiveSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    playback: PlaybackSettings = field(default_factory=PlaybackSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    echo: EchoSettings = field(default_factory=EchoSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    button: ButtonSettings = field(default_factory=ButtonSettings)
    leds: LedSettings = field(default_factory=LedSettings)
    outputs: tuple[OutputSettings, ...] = ()
    gpio_tool_timeout_s: float = 2.0
    health_interval_s: float = 60.0
    ready_timeout_s: float = 30.0
    mqtt: MqttSettings | None = None
    ha_device: HaDeviceSettings | None = None
    home_assistant: HomeAssistantSettings | None = None
    tools: tuple[ToolDeclaration, ...] = ()


class _Table:
    """Reads one TOML table, remembering which keys were asked for."""

    def __init__(self, path: Path, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, name, f"must be a table, got {type(data).__name__}")
        self.path = path
        self.name = name
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.key(key), reason)

    def get(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: T,
        check: Callable[[Any], str | None] | None = None,
    ) -> T:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"expected {_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {_names(kinds)}, got {value!r}")
        if check is not None and (problem := check(value)) is not None:
            raise self.fail(key, problem)
        return value  # type: ignore[return-value]

    def optional(
        self, key: str, kind: type[T], check: Callable[[Any], str | None] | None = None
    ) -> T | None:
        value: T | None = self.get(key, (kind,), None, check)
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _names(kinds: tuple[type, ...]) -> str:
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: (
        None if low <= v <= high else f"must be between {low:g} and {high:g}, got {v!r}"
    )


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be positive, got {v!r}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"


GPIO_PIN = _between(0, 27)
NUMBER = (int, float)


def _pin(t: _Table, key: str, default: int | None) -> int | None:
    """A BCM pin number, or ``false`` for a part that is not fitted."""
    value = t.get(key, (int, bool), default if default is not None else False)
    if value is True:
        raise t.fail(key, "expected a GPIO number (0 to 27) or false, got true")
    if value is False:
        return None
    if (problem := GPIO_PIN(value)) is not None:
        raise t.fail(key, problem)
    return int(value)


def _live(path: Path, data: Any) -> LiveSettings:
    t = _Table(path, "live", data)
    if "api_key" in t.data:
        raise t.fail(
            "api_key",
            "the API key does not belong in the config file; set GEMINI_API_KEY or give "
            f"systemd a credential named {API_KEY_CREDENTIAL!r}",
        )
    defaults = LiveSettings()
    ca = t.optional("ca_file", str)
    live = LiveSettings(
        model=t.get("model", str, defaults.model),
        voice=t.optional("voice", str),
        system_instruction=t.optional("system_instruction", str),
        manual_activity=True,
        input_transcription=t.get("input_transcription", bool, True),
        output_transcription=t.get("output_transcription", bool, True),
        resumption=t.get("resumption", bool, True),
        context_compression=t.get("context_compression", bool, True),
        base_url=t.optional("endpoint", str),
        api_version=t.get("api_version", str, "v1beta", _one_of("v1beta", "v1alpha")),
        ca_file=None if ca is None else Path(ca),
        connect_timeout_s=float(t.get("connect_timeout_s", NUMBER, 10.0, _positive)),
        stall_timeout_s=float(t.get("stall_timeout_s", NUMBER, 20.0, _positive)),
        response_cap_chars=t.get("response_cap_chars", int, 8000, _between(256, 1_000_000)),
    )
    t.done()
    if live.ca_file is not None and not live.ca_file.is_file():
        raise t.fail("ca_file", f"no such file: {live.ca_file}")
    return live


def _audio(path: Path, data: Any) -> tuple[CaptureSettings, PlaybackSettings]:
    t = _Table(path, "audio", data)
    rate = _between(8000, 192000)
    frame_ms = t.get("frame_ms", int, 20, _one_of_int(10, 20, 30))
    capture = CaptureSettings(
        device=t.get("capture_device", str, "default"),
        device_rate=t.optional("capture_rate", int, rate),
        frame_ms=frame_ms,
    )
    playback = PlaybackSettings(
        device=t.get("playback_device", str, "default"),
        device_rate=t.optional("playback_rate", int, rate),
        jitter_ms=t.get("jitter_ms", int, 60, _between(0, 1000)),
    )
    t.done()
    return capture, playback


def _one_of_int(*choices: int) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


def _vad(path: Path, data: Any, frame_ms: int) -> VadSettings:
    t = _Table(path, "vad", data)
    d = VadSettings()
    start = StartTrigger(
        voiced_frames=t.get("start_voiced_frames", int, d.start.voiced_frames, _between(1, 50)),
        window_frames=t.get("start_window_frames", int, d.start.window_frames, _between(1, 50)),
        aggressiveness=t.get("aggressiveness", int, d.start.aggressiveness, _between(0, 3)),
    )
    if start.voiced_frames > start.window_frames:
        raise t.fail("start_voiced_frames", "must not exceed start_window_frames")
    settings = VadSettings(
        frame_ms=frame_ms,
        start=start,
        preroll_ms=t.get("preroll_ms", int, d.preroll_ms, _between(0, 2000)),
        hangover_ms=t.get("hangover_ms", int, d.hangover_ms, _between(frame_ms, 5000)),
        min_utterance_ms=t.get("min_utterance_ms", int, d.min_utterance_ms, _between(0, 5000)),
        max_utterance_ms=t.get("max_utterance_ms", int, d.max_utterance_ms, _between(1000, 120000)),
        noise_margin_db=float(
            t.get("noise_margin_db", (int, float), d.noise_margin_db, _between(0, 30))
        ),
        noise_window_ms=t.get("noise_window_ms", int, d.noise_window_ms, _between(frame_ms, 60000)),
    )
    t.done()
    return settings


def _echo(path: Path, data: Any) -> EchoSettings:
    t = _Table(path, "echo", data)
    mode = t.get("mode", str, EchoMode.HALF_DUPLEX.value, _one_of(*(m.value for m in EchoMode)))
    settings = EchoSettings(
        mode=EchoMode(mode), tail_ms=t.get("tail_ms", int, 300, _between(0, 5000))
    )
    t.done()
    return settings


def _button(path: Path, data: Any) -> ButtonSettings:
    t = _Table(path, "button", data)
    mode = t.get("mode", str, ButtonMode.PRESS.value, _one_of(*(m.value for m in ButtonMode)))
    settings = ButtonSettings(
        pin=_pin(t, "pin", ButtonSettings.pin),
        pull_up=t.get("pull_up", bool, True),
        mode=ButtonMode(mode),
        bounce_ms=t.get("bounce_ms", int, 30, _between(0, 1000)),
        long_press_s=float(t.get("long_press_s", NUMBER, 1.5, _between(0.3, 30))),
    )
    t.done()
    return settings


def _gpio(path: Path, data: Any) -> GpioSettings:
    t = _Table(path, "gpio", data)
    settings = GpioSettings(pin_factory=t.optional("pin_factory", str, _one_of(*FACTORIES)))
    t.done()
    return settings


def _leds(path: Path, data: Any) -> LedSettings:
    t = _Table(path, "leds", data)
    settings = LedSettings(
        status_pin=_pin(t, "status_pin", LedSettings.status_pin),
        status_pwm=t.get("status_pwm", bool, True),
        tool_pin=_pin(t, "tool_pending_pin", LedSettings.tool_pin),
    )
    t.done()
    return settings


def _outputs(path: Path, data: Any) -> tuple[OutputSettings, ...]:
    if not isinstance(data, list):
        raise ConfigError(path, "outputs", "must be an array of tables ([[outputs]])")
    outputs = []
    names: set[str] = set()
    for i, item in enumerate(data):
        t = _Table(path, f"outputs[{i}]", item)
        name = t.get(
            "name",
            str,
            "",
            lambda v: None if v.replace("_", "").isalnum() else "letters, digits and _ only",
        )
        if not name:
            raise t.fail("name", "is required")
        if name in names:
            raise t.fail("name", f"{name!r} is declared twice")
        names.add(name)
        pin = t.get("pin", int, -1, GPIO_PIN)
        if pin < 0:
            raise t.fail("pin", "is required")
        outputs.append(
            OutputSettings(
                name=name,
                pin=pin,
                kind=t.get("kind", str, "relay", _one_of(*OUTPUT_KINDS)),
                active_high=t.get("active_high", bool, True),
                description=t.get("description", str, ""),
            )
        )
        t.done()
    return tuple(outputs)


def _check_pins(path: Path, settings: Settings) -> None:
    used: dict[int, str] = {}
    claims = [
        ("button.pin", settings.button.pin),
        ("leds.status_pin", settings.leds.status_pin),
        ("leds.tool_pending_pin", settings.leds.tool_pin),
        *((f"outputs[{i}].pin", o.pin) for i, o in enumerate(settings.outputs)),
    ]
    for key, pin in claims:
        if pin is None:
            continue
        if pin in used:
            raise ConfigError(path, key, f"GPIO{pin} is already used by {used[pin]}")
        used[pin] = key


def _home_actions(
    path: Path, top: _Table
) -> tuple[
    MqttSettings | None,
    HaDeviceSettings | None,
    HomeAssistantSettings | None,
    tuple[ToolDeclaration, ...],
]:
    """``[mqtt]``, ``[home_assistant]`` and ``[[tools]]``, parsed in services.tools."""
    mqtt_data = top.optional("mqtt", dict)
    ha_data = top.optional("home_assistant", dict)
    try:
        mqtt, device = (None, None) if mqtt_data is None else parse_mqtt(mqtt_data)
        ha = None if ha_data is None else parse_home_assistant(ha_data)
        tools = parse_tools(
            top.get("tools", list, []),
            mqtt=mqtt is not None,
            home_assistant=ha is not None,
            reserved=GPIO_TOOL_NAMES,
        )
    except SettingError as exc:
        raise ConfigError(path, exc.key, exc.reason) from exc
    return mqtt, device, ha, tools


def parse_settings(data: Mapping[str, Any], path: Path) -> Settings:
    """Validate decoded TOML ``data`` read from ``path``."""
    top = _Table(path, "", dict(data))
    mqtt, ha_device, home_assistant, tools = _home_actions(path, top)
    capture, playback = _audio(path, top.get("audio", dict, {}))
    daemon = _Table(path, "daemon", top.get("daemon", dict, {}))
    settings = Settings(
        path=path,
        live=_live(path, top.get("live", dict, {})),
        capture=capture,
        playback=playback,
        vad=_vad(path, top.get("vad", dict, {}), capture.frame_ms),
        echo=_echo(path, top.get("echo", dict, {})),
        gpio=_gpio(path, top.get("gpio", dict, {})),
        button=_button(path, top.get("button", dict, {})),
        leds=_leds(path, top.get("leds", dict, {})),
        outputs=_outputs(path, top.get("outputs", list, [])),
        gpio_tool_timeout_s=float(daemon.get("gpio_tool_timeout_s", NUMBER, 2.0, _positive)),
        health_interval_s=float(daemon.get("health_interval_s", NUMBER, 60.0, _between(1, 86400))),
        ready_timeout_s=float(daemon.get("ready_timeout_s", NUMBER, 30.0, _between(1, 600))),
        mqtt=mqtt,
        ha_device=ha_device,
        home_assistant=home_assistant,
        tools=tools,
    )
    daemon.done()
    top.done()
    _check_pins(path, settings)
    return settings


def load_settings(path: Path) -> Settings:
    """Read and validate the config file at ``path``; raises :class:`ConfigError`."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(path, "", "no such file") from exc
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from exc
    return parse_settings(data, path)


def load_api_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """The Gemini API key from the environment or systemd's credentials directory."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        if environ.get(name):
            return environ[name].strip()
    return read_credential(API_KEY_CREDENTIAL, environ)


def require_api_key(config: Path, environ: Mapping[str, str] = os.environ) -> str:
    """The API key, or a :class:`ConfigError` saying where it should come from."""
    key = load_api_key(environ)
    if key is None:
        raise ConfigError(
            config,
            "",
            "no API key: set GEMINI_API_KEY or give systemd a credential named "
            f"{API_KEY_CREDENTIAL!r}",
        )
    return key
