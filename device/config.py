"""Configuration: a TOML file into frozen, validated settings.

Every key has a default except the model credentials, which never live in this file: the
API key comes from ``GEMINI_API_KEY``/``GOOGLE_API_KEY`` or from systemd's credentials
directory. An error names the file, the key and the reason; the command exits with 78
(``EX_CONFIG``) so systemd does not restart a daemon that cannot start.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from device.audio import CaptureSettings, PlaybackSettings
from device.echo import EchoMode, EchoSettings
from device.events import ButtonMode
from device.gpio_settings import ButtonSettings, LedSettings, MuteSettings, OutputSettings
from device.pins import FACTORIES
from device.vad import StartTrigger, VadSettings
from services.live.profiles import THINKING_LEVELS, ProfileError, check_request
from services.live.settings import LiveSettings
from services.live.usage import Prices
from services.settings_reader import SettingError, Table
from services.settings_rules import (
    FileProblem,
    between,
    ca_file,
    excerpt,
    one_line,
    read_small_text,
    text_rule,
    url_problem,
)
from services.tools.declarations import (
    ToolDeclaration,
    parse_home_assistant,
    parse_mqtt,
    parse_tools,
    read_credential,
)
from services.tools.ha_device import HaDeviceSettings
from services.tools.home_assistant import HomeAssistantSettings
from services.tools.mqtt import MqttSettings
from services.tools.registry import Behavior, Scheduling

DEFAULT_PATH = Path("/etc/pi-live-voice/config.toml")
EX_CONFIG = 78
# What the commands print before a ConfigError, and the bound on the whole line.
MESSAGE_PREFIX = "pi-live-voice: "
MAX_MESSAGE_CHARS = 300
MAX_CONFIG_BYTES = 1024 * 1024
API_KEY_CREDENTIAL = "gemini-api-key"
OUTPUT_KINDS = ("relay", "led", "pwm")
# The GPIO tools' names; a [[tools]] entry may not take them.
GPIO_TOOL_NAMES = ("set_output", "get_outputs")
E = TypeVar("E", bound=StrEnum)


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is the one-line message to print.

    Every part is escaped and cut so that the printed line stays within
    :data:`MAX_MESSAGE_CHARS`, whatever the file's name, keys or values."""

    def __init__(self, path: Path | str, key: str, reason: str) -> None:
        shown = str(path)
        if len(shown) > 100:
            shown = "…" + shown[-99:]
        shown = one_line(shown, 100)
        key = one_line(key, 80)
        room = MAX_MESSAGE_CHARS - len(MESSAGE_PREFIX) - len(shown) - len(key) - 4
        reason = one_line(reason, room)
        super().__init__(f"{shown}: {key}: {reason}" if key else f"{shown}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class GpioSettings:
    """The pin driver. None leaves the choice to ``GPIOZERO_PIN_FACTORY``, then lgpio."""

    pin_factory: str | None = None


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
    mute: MuteSettings = field(default_factory=MuteSettings)
    leds: LedSettings = field(default_factory=LedSettings)
    outputs: tuple[OutputSettings, ...] = ()
    gpio_tool_timeout_s: float = 2.0
    # None: the model profile's default behaviour for set_output and get_outputs.
    gpio_tool_behavior: Behavior | None = None
    gpio_tool_scheduling: Scheduling | None = None
    health_interval_s: float = 60.0
    ready_timeout_s: float = 30.0
    mqtt: MqttSettings | None = None
    ha_device: HaDeviceSettings | None = None
    home_assistant: HomeAssistantSettings | None = None
    tools: tuple[ToolDeclaration, ...] = ()
    # US dollars per million tokens; None: tokens are counted, not priced.
    prices: Prices | None = None
    # US dollars a day; past it no session opens until the next day or a long press.
    daily_budget: float | None = None


_between = between


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: (
        None if v in choices else f"must be one of {', '.join(choices)}; got {excerpt(v)}"
    )


# The forms of the [live] and [audio] strings.
MODEL = text_rule(
    128, re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*"), "letters, digits, '.', '_', '-' and '/' only"
)
VOICE = text_rule(64, re.compile(r"[A-Za-z0-9_-]+"), "letters, digits, _ and - only")
INSTRUCTION = text_rule(32_000, re.compile(r"[^\x00]*"), "no NUL characters")
PCM_NAME = text_rule(
    128, re.compile(r"[^\s\x00-\x1f\x7f]+"), "an ALSA PCM name without spaces (default, hw:1)"
)
OUTPUT_NAME = text_rule(64, re.compile(r"[A-Za-z0-9_]+"), "letters, digits and _ only")
DESCRIPTION = text_rule(1000)
ENDPOINT_SCHEMES = ("https", "http", "wss", "ws")


GPIO_PIN = _between(0, 27)
NUMBER = (int, float)


def _pin(t: Table, key: str, default: int | None) -> int | None:
    """A BCM pin number, or ``false`` for a part that is not fitted."""
    value = t.get(key, (int, bool), default if default is not None else False)
    if value is True:
        raise t.fail(key, "expected a GPIO number (0 to 27) or false, got true")
    if value is False:
        return None
    if (problem := GPIO_PIN(value)) is not None:
        raise t.fail(key, problem)
    return int(value)


def _live(data: Any) -> LiveSettings:
    t = Table("live", data)
    if "api_key" in t.data:
        raise t.fail(
            "api_key",
            "the API key does not belong in the config file; set GEMINI_API_KEY or give "
            f"systemd a credential named {API_KEY_CREDENTIAL!r}",
        )
    defaults = LiveSettings()
    ca = t.optional("ca_file", str, lambda v: None if v else "must not be empty")
    live = LiveSettings(
        model=t.get("model", str, defaults.model, MODEL),
        voice=t.optional("voice", str, VOICE),
        system_instruction=t.optional("system_instruction", str, INSTRUCTION),
        manual_activity=True,
        input_transcription=t.get("input_transcription", bool, True),
        output_transcription=t.get("output_transcription", bool, True),
        resumption=t.get("resumption", bool, True),
        context_compression=t.get("context_compression", bool, True),
        base_url=t.optional("endpoint", str, lambda v: url_problem(v, ENDPOINT_SCHEMES)),
        api_version=t.get("api_version", str, "v1beta", _one_of("v1beta", "v1alpha")),
        ca_file=None if ca is None else Path(ca),
        connect_timeout_s=float(
            t.get("connect_timeout_s", NUMBER, 10.0, _between(0.5, 120, "seconds"))
        ),
        stall_timeout_s=float(t.get("stall_timeout_s", NUMBER, 20.0, _between(1, 600, "seconds"))),
        ping_interval_s=float(t.get("ping_interval_s", NUMBER, 20.0, _between(1, 300, "seconds"))),
        ping_timeout_s=float(t.get("ping_timeout_s", NUMBER, 60.0, _between(1, 600, "seconds"))),
        response_cap_chars=t.get("response_cap_chars", int, 8000, _between(256, 1_000_000)),
        # -1 asks for dynamic thinking, 0 for none.
        thinking_budget=t.optional("thinking_budget", int, _between(-1, 32768)),
        thinking_level=t.optional("thinking_level", str, _one_of(*THINKING_LEVELS)),
        proactive_audio=t.optional("proactive_audio", bool),
        affective_dialog=t.optional("affective_dialog", bool),
    )
    t.done()
    try:
        check_request(live.profile, live.setup_request)
    except ProfileError as exc:
        raise t.fail(exc.key, exc.reason) from exc
    if ca is not None:
        try:
            ca_file(ca)
        except FileProblem as exc:
            raise t.fail("ca_file", str(exc)) from exc
    return live


def _audio(data: Any) -> tuple[CaptureSettings, PlaybackSettings]:
    t = Table("audio", data)
    rate = _between(8000, 192000)
    frame_ms = t.get("frame_ms", int, 20, _one_of_int(10, 20, 30))
    capture = CaptureSettings(
        device=t.get("capture_device", str, "default", PCM_NAME),
        device_rate=t.optional("capture_rate", int, rate),
        frame_ms=frame_ms,
    )
    playback = PlaybackSettings(
        device=t.get("playback_device", str, "default", PCM_NAME),
        device_rate=t.optional("playback_rate", int, rate),
        jitter_ms=t.get("jitter_ms", int, 60, _between(0, 1000)),
    )
    t.done()
    return capture, playback


def _enum(t: Table, key: str, kind: type[E]) -> E | None:
    value = t.optional(key, str, _one_of(*(m.value for m in kind)))
    return None if value is None else kind(value)


def _one_of_int(*choices: int) -> Callable[[Any], str | None]:
    return lambda v: (
        None if v in choices else f"must be one of {', '.join(map(str, choices))}; got {v}"
    )


def _vad(data: Any, frame_ms: int) -> VadSettings:
    t = Table("vad", data)
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


def _echo(data: Any) -> EchoSettings:
    t = Table("echo", data)
    mode = t.get("mode", str, EchoMode.HALF_DUPLEX.value, _one_of(*(m.value for m in EchoMode)))
    settings = EchoSettings(
        mode=EchoMode(mode), tail_ms=t.get("tail_ms", int, 300, _between(0, 5000))
    )
    t.done()
    return settings


def _button(data: Any) -> ButtonSettings:
    t = Table("button", data)
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


def _mute(data: Any) -> MuteSettings:
    t = Table("mute", data)
    settings = MuteSettings(
        pin=_pin(t, "pin", None),
        pull_up=t.get("pull_up", bool, True),
        bounce_ms=t.get("bounce_ms", int, 30, _between(0, 1000)),
    )
    t.done()
    return settings


def _gpio(data: Any) -> GpioSettings:
    t = Table("gpio", data)
    settings = GpioSettings(pin_factory=t.optional("pin_factory", str, _one_of(*FACTORIES)))
    t.done()
    return settings


def _leds(data: Any) -> LedSettings:
    t = Table("leds", data)
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
        t = Table(f"outputs[{i}]", item)
        if "name" not in t.data:
            raise t.fail("name", "is required")
        name = t.get("name", str, "", OUTPUT_NAME)
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
                description=t.get("description", str, "", DESCRIPTION),
            )
        )
        t.done()
    return tuple(outputs)


def _check_behaviors(path: Path, settings: Settings) -> None:
    """Every tool's behaviour and scheduling must be one the model's profile takes."""
    profile = settings.live.profile
    claims = [
        ("daemon.gpio_tool_", settings.gpio_tool_behavior, settings.gpio_tool_scheduling),
        *((f"tools[{i}].", t.behavior, t.scheduling) for i, t in enumerate(settings.tools)),
    ]
    for prefix, behavior, scheduling in claims:
        try:
            profile.tool_behavior(behavior, scheduling)
        except ProfileError as exc:
            raise ConfigError(path, prefix + exc.key, exc.reason) from exc


def _check_pins(path: Path, settings: Settings) -> None:
    used: dict[int, str] = {}
    claims = [
        ("button.pin", settings.button.pin),
        ("mute.pin", settings.mute.pin),
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


def _usage(data: Any) -> tuple[Prices | None, float | None]:
    """``[usage]``: the prices, and the daily budget they make possible."""
    t = Table("usage", data)
    prices = _prices(t.optional("prices", dict))
    budget: float | None = t.get(
        "daily_budget", (int, float), None, _between(0.01, 10_000, "US dollars")
    )
    t.done()
    if budget is not None and prices is None:
        raise t.fail("daily_budget", "needs [usage] prices: a budget is spent in dollars")
    return prices, None if budget is None else float(budget)


def _prices(raw: dict[str, Any] | None) -> Prices | None:
    """``[usage] prices``: what the model costs, per million tokens of each kind."""
    if raw is None:
        return None
    p = Table("usage.prices", raw)
    values = {}
    for key in ("input_text", "input_audio", "output_text", "output_audio"):
        if key not in p.data:
            raise p.fail(key, "is required (US dollars per million tokens)")
        values[key] = p.number(key, 0.0, 0, 10_000)
    p.done()
    return Prices(**values)


def _home_actions(
    top: Table,
) -> tuple[
    MqttSettings | None,
    HaDeviceSettings | None,
    HomeAssistantSettings | None,
    tuple[ToolDeclaration, ...],
]:
    """``[mqtt]``, ``[home_assistant]`` and ``[[tools]]``, parsed in services.tools."""
    mqtt_data = top.optional("mqtt", dict)
    ha_data = top.optional("home_assistant", dict)
    mqtt, device = (None, None) if mqtt_data is None else parse_mqtt(mqtt_data)
    ha = None if ha_data is None else parse_home_assistant(ha_data)
    tools = parse_tools(
        top.get("tools", list, []),
        mqtt=mqtt is not None,
        home_assistant=ha is not None,
        reserved=GPIO_TOOL_NAMES,
    )
    return mqtt, device, ha, tools


def parse_settings(data: Mapping[str, Any], path: Path) -> Settings:
    """Validate decoded TOML ``data`` read from ``path``."""
    try:
        return _parse_settings(data, path)
    except SettingError as exc:
        raise ConfigError(path, exc.key, exc.reason) from exc


def _parse_settings(data: Mapping[str, Any], path: Path) -> Settings:
    top = Table("", dict(data))
    mqtt, ha_device, home_assistant, tools = _home_actions(top)
    capture, playback = _audio(top.get("audio", dict, {}))
    daemon = Table("daemon", top.get("daemon", dict, {}))
    prices, daily_budget = _usage(top.get("usage", dict, {}))
    settings = Settings(
        path=path,
        live=_live(top.get("live", dict, {})),
        capture=capture,
        playback=playback,
        vad=_vad(top.get("vad", dict, {}), capture.frame_ms),
        echo=_echo(top.get("echo", dict, {})),
        gpio=_gpio(top.get("gpio", dict, {})),
        button=_button(top.get("button", dict, {})),
        mute=_mute(top.get("mute", dict, {})),
        leds=_leds(top.get("leds", dict, {})),
        outputs=_outputs(path, top.get("outputs", list, [])),
        gpio_tool_timeout_s=float(
            daemon.get("gpio_tool_timeout_s", NUMBER, 2.0, _between(0.05, 60, "seconds"))
        ),
        gpio_tool_behavior=_enum(daemon, "gpio_tool_behavior", Behavior),
        gpio_tool_scheduling=_enum(daemon, "gpio_tool_scheduling", Scheduling),
        health_interval_s=float(daemon.get("health_interval_s", NUMBER, 60.0, _between(1, 86400))),
        ready_timeout_s=float(daemon.get("ready_timeout_s", NUMBER, 30.0, _between(1, 600))),
        mqtt=mqtt,
        ha_device=ha_device,
        home_assistant=home_assistant,
        tools=tools,
        prices=prices,
        daily_budget=daily_budget,
    )
    daemon.done()
    top.done()
    _check_pins(path, settings)
    _check_behaviors(path, settings)
    return settings


def load_settings(path: Path) -> Settings:
    """Read and validate the config file at ``path``; raises :class:`ConfigError`.

    A path that is not a regular file (a FIFO, a device, a directory) is refused without
    being opened, and so is a file over :data:`MAX_CONFIG_BYTES`."""
    try:
        text = read_small_text(path, MAX_CONFIG_BYTES)
    except FileProblem as exc:
        raise ConfigError(path, "", exc.reason) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(path, "", "not valid TOML: nested too deeply") from exc
    except ValueError as exc:  # tomllib's int() past Python's 4300-digit limit
        raise ConfigError(path, "", f"not valid TOML: {exc}") from exc
    return parse_settings(data, path)


def load_api_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """The Gemini API key from the environment or systemd's credentials directory."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        if key := environ.get(name, "").strip():
            return key
    try:
        return read_credential(API_KEY_CREDENTIAL, environ)
    except FileProblem as exc:
        raise ConfigError(exc.path, "", exc.reason) from exc


def known_api_keys(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Every API key this process could be given (both variables, the credential), for the
    log's redactor; an unreadable credential is left to the command that needs the key."""
    keys = [environ.get(name, "").strip() for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY")]
    with contextlib.suppress(FileProblem):
        keys.append(read_credential(API_KEY_CREDENTIAL, environ) or "")
    return [key for key in keys if key]


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
