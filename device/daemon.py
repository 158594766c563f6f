"""The daemon: the composition root that wires audio, GPIO, the state machine and the session.

This is the one module that knows both the device side and the network side. Every part is
built from the settings and the injected hardware (audio source and sink, pin factory), and
runs as a named task in one ``asyncio.TaskGroup``. Events from the button, the VAD, the Live
session and playback go through the pure :class:`~device.state.DeviceStateMachine`; its
commands are carried out here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from device import pins
from device.audio import AudioSink, AudioSource
from device.capture import AlsaAudioSource
from device.config import EX_CONFIG, ConfigError, Settings, load_settings, require_api_key
from device.events import (
    Command,
    Connected,
    Event,
    FlushPlayback,
    GateOpened,
    Interrupted,
    ModelAudio,
    MuteCapture,
    PauseCapture,
    PlaybackIdle,
    Reconnecting,
    RetrySession,
    SendActivity,
    SessionFailed,
    ShowState,
    State,
    StreamCapture,
    ToolCallStarted,
    ToolLed,
    TurnComplete,
)
from device.gpio import Indicators, MuteSwitch, Outputs, TalkButton
from device.health import Fields, HealthReporter, health_fields
from device.instance import EX_UNAVAILABLE, AlreadyRunning, InstanceLock
from device.journal import protect
from device.notify import SystemdSupervisor, Watchdog, capture_progress, watchdog_period
from device.playback import AlsaAudioSink
from device.state import DeviceStateMachine
from device.uplink import Uplink
from services.live.session import (
    ConnectionState,
    ConnectionStatus,
    LiveSession,
    LiveSessionFatal,
    SessionEvents,
)
from services.live.usage import DailyBudget, UsageMeter, seconds_until_tomorrow
from services.tools.actions import build_tools
from services.tools.gpio import gpio_tools
from services.tools.ha_device import HaDevice
from services.tools.home_assistant import HomeAssistant
from services.tools.mqtt import MqttConnection
from services.tools.registry import ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

PLAYBACK_RECHECK_S = 0.02
# Where the microphone's audio goes, for the journal and Home Assistant.
MICROPHONE_WORDS = {
    "sending": "audio is being sent to the service",
    "local": "heard on this device only, nothing is sent",
    "muted": "muted by its switch, nothing is captured or sent",
}
# What a reload (SIGHUP) applies at once, and what it only reports as needing a restart: every
# setting is in one of the two.
APPLIED_ON_RELOAD = ("vad", "echo", "health_interval_s")
RESTART_TO_APPLY = (
    *("live", "capture", "playback", "gpio", "button", "mute", "leds", "outputs"),
    *("mqtt", "ha_device", "home_assistant", "tools", "prices", "daily_budget"),
    *("ready_timeout_s", "gpio_tool_timeout_s", "gpio_tool_behavior", "gpio_tool_scheduling"),
)


class Supervisor(Protocol):
    """Who is told of the daemon's life: systemd through sd_notify, or nobody."""

    def ready(self) -> None:
        """Start-up is over."""

    def status(self, text: str) -> None:
        """A one-line human state."""

    def reloading(self) -> None:
        """A config reload begins (``ready`` follows when it is done)."""

    def stopping(self) -> None:
        """Shutdown begins."""


class Unsupervised:
    """The :class:`Supervisor` of a daemon nobody watches."""

    def ready(self) -> None:
        """Nothing to tell."""

    def status(self, text: str) -> None:
        """Nothing to tell."""

    def reloading(self) -> None:
        """Nothing to tell."""

    def stopping(self) -> None:
        """Nothing to tell."""


@dataclass(frozen=True)
class Observation:
    """Something the daemon did, for the demo's timeline and for tests."""

    kind: str  # "state", "tool-led", "signal", "tool-call", "tool-result", "said", ...
    detail: str


def _why(exc: Exception) -> str:
    """A loader's failure other than a :class:`ConfigError` (the loader turns every fault
    of a file it knows into one), in a few words on one line."""
    text = " ".join(str(exc).split())[:200]
    return f"cannot be read: {type(exc).__name__}{': ' + text if text else ''}"


SessionFactory = Callable[[ToolRegistry, SessionEvents], LiveSession]
"""Builds the daemon's session from its tools and the events it reports (the bench's is timed)."""


class Daemon(SessionEvents):
    """The running device. Build it, then ``await run(stop)``."""

    def __init__(
        self,
        settings: Settings,
        api_key: str,
        *,
        source: AudioSource,
        sink: AudioSink,
        pin_factory: Any,
        extra_tools: Sequence[ToolSpec] = (),
        observe: Callable[[Observation], None] | None = None,
        supervisor: Supervisor | None = None,
        session: SessionFactory | None = None,
        clock: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.source = source
        self.sink = sink
        self.machine = DeviceStateMachine(
            settings.button.mode,
            frame_ms=settings.vad.frame_ms,
            hangover_ms=settings.vad.hangover_ms,
        )
        self.indicators = Indicators(settings.leds, pin_factory)
        self.outputs = Outputs(settings.outputs, pin_factory)
        self._pin_factory = pin_factory
        self._button: TalkButton | None = None
        self._mute_switch: MuteSwitch | None = None
        self._tool_paused = False  # capture paused for a pending call, apart from the mute
        self._microphone = ""  # the last MICROPHONE_WORDS key said
        # Home actions: one MQTT connection and one Home Assistant client for all the tools.
        self.mqtt = None if settings.mqtt is None else MqttConnection(settings.mqtt)
        self.ha_device = (
            None
            if self.mqtt is None or settings.ha_device is None
            else HaDevice(settings.ha_device, self.mqtt, priced=settings.prices is not None)
        )
        self.home_assistant = (
            None if settings.home_assistant is None else HomeAssistant(settings.home_assistant)
        )
        home_tools = build_tools(settings.tools, mqtt=self.mqtt, home_assistant=self.home_assistant)
        self.tools = ToolRegistry(
            [
                *gpio_tools(
                    self.outputs,
                    settings.gpio_tool_timeout_s,
                    settings.gpio_tool_behavior,
                    settings.gpio_tool_scheduling,
                ),
                *home_tools,
                *extra_tools,
            ]
        )
        self.session = (
            session(self.tools, self)
            if session is not None
            else LiveSession(settings.live, self.tools, api_key, self)
        )
        self.usage = UsageMeter(prices=settings.prices)
        self.budget = None if settings.daily_budget is None else DailyBudget(settings.daily_budget)
        self._budget_spent = asyncio.Event()
        self._usage_session: str | None = None
        self.uplink = Uplink(
            self.session,
            settings.vad,
            settings.echo,
            settings.button.mode,
            dispatch=self.dispatch,
            streaming=lambda: self.machine.streaming,
            on_signal=self._observe_signal,
        )
        self._retry = asyncio.Event()
        self._playing = asyncio.Event()  # mirrors machine.playing, for the playback watch
        self._observe = observe or (lambda _: None)
        self.health_reporter = HealthReporter(
            settings.health_interval_s,
            self.health,
            status=lambda: self.status_line,
            state=lambda: self.machine.state.value,
        )
        self.supervisor: Supervisor = supervisor or Unsupervised()
        self._status_line = ""
        self.status_line = "starting"
        # Ready once audio frames flow and the first session is connected.
        self.ready = asyncio.Event()
        self._connected_once = False
        self._heard_once = False
        self.indicators.show(State.RECONNECTING)
        if self.ha_device is not None:
            self.ha_device.show_state(State.RECONNECTING.value)
        self._show_usage()
        self._show_microphone()

    @property
    def status_line(self) -> str:
        """What the device is doing, in one line ("listening", "tool-pending: set_output")."""
        return self._status_line

    @status_line.setter
    def status_line(self, text: str) -> None:
        if text != self._status_line:
            self._status_line = text
            self.supervisor.status(text)
            if self.ha_device is not None:
                self.ha_device.show_status(text)

    def _check_ready(self) -> None:
        if self._connected_once and self._heard_once and not self.ready.is_set():
            self.ready.set()

    # -- health ------------------------------------------------------------------------------
    def capture_progress(self) -> int | None:
        """What the watchdog judges capture by (:func:`~device.notify.capture_progress`)."""
        return capture_progress(self.source.stats)

    def health(self) -> Fields:
        """The counters of the periodic health line (and the benchmarks)."""
        today = self.usage.on(self._clock().date())
        return health_fields(
            self.source.stats,
            self.sink.stats,
            self.uplink.stats,
            self.session.stats,
            gated_by_session=self.session.gated_frames(),
            tokens_today=today.tokens_in + today.tokens_out,
            cost_today=today.cost if self.usage.prices else None,
        )

    # -- reload ------------------------------------------------------------------------------
    def reload(self) -> list[str]:
        """Re-read the config file (SIGHUP). Returns the sections that need a restart.

        The VAD, echo and health settings apply at once (the VAD between utterances); the
        rest — devices, pins, the Live setup — is fixed for the life of the process, so a
        change there is reported, not half-applied. A config that no longer loads is refused
        and the running one kept.
        """
        path = self.settings.path
        try:
            new = load_settings(path)
        except ConfigError as exc:
            log.error("reload refused: %s; the running config is kept", exc)  # noqa: TRY400
            return []
        except Exception as exc:  # whatever a broken file makes the loader raise
            log.error(  # noqa: TRY400 - a bad file is no bug: one line, no traceback
                "reload refused: %s: %s; the running config is kept", path, _why(exc)
            )
            return []
        old = self.settings
        changed = [name for name in RESTART_TO_APPLY if getattr(new, name) != getattr(old, name)]
        self.settings = replace(old, **{name: getattr(new, name) for name in APPLIED_ON_RELOAD})
        self.machine.hangover_ms = new.vad.hangover_ms
        self.uplink.reload(
            new.vad if new.vad != old.vad else None, new.echo if new.echo != old.echo else None
        )
        self.health_reporter.set_interval(new.health_interval_s)
        if changed:
            log.warning(
                "reloaded vad, echo and health settings; %s changed and apply after a restart "
                "(systemctl restart pi-live-voice)",
                ", ".join(changed),
            )
        else:
            log.info("config reloaded")
        return changed

    # -- events in, commands out -----------------------------------------------------------
    def dispatch(self, event: Event) -> None:
        """Feed ``event`` to the state machine and carry out its commands at once."""
        before = self.machine.state
        transition = self.machine.handle(event)
        if not transition.handled:
            log.debug("ignored %s in state %s", type(event).__name__, before.value)
        for command in transition.commands:
            self._execute(command)
        if self.machine.playing:
            self._playing.set()
        else:
            self._playing.clear()

    def _execute(self, command: Command) -> None:
        match command:
            case ShowState(state):
                self.indicators.show(state)
                self._set_status(state)
                self._observe(Observation("state", state.value))
            case ToolLed(on):
                self.indicators.tool_pending(on)
                self._observe(Observation("tool-led", "on" if on else "off"))
            case PauseCapture(paused):
                self._tool_paused = paused
                self.source.paused = paused or self.machine.muted
                self.uplink.pause(paused, () if paused else self.source.take_gated_levels())
            case MuteCapture(muted):
                self.source.paused = muted or self._tool_paused
                if not muted and not self._tool_paused:
                    self.source.take_gated_levels()  # muted frames are no room tone to learn
                self.indicators.muted(muted)
                self._observe(Observation("mute", "on" if muted else "off"))
                self._show_microphone()
                self._set_status(self.machine.state)
            case StreamCapture():
                self._show_microphone()
            case SendActivity():
                self.uplink.signal(command)
            case FlushPlayback():
                self.sink.flush()
                self._observe(Observation("flush", "playback flushed"))
            case RetrySession():
                self._retry.set()

    def _show_microphone(self) -> None:
        """Say, once per change, where the microphone's audio goes."""
        where = "sending" if self.machine.streaming else "local"
        if self.machine.muted:
            where = "muted"
        if where != self._microphone:
            self._microphone = where
            log.info("microphone: %s", MICROPHONE_WORDS[where], extra={"MICROPHONE": where})
            if self.ha_device is not None:
                self.ha_device.show_microphone(where)

    def _set_status(self, state: State) -> None:
        if state is State.TOOL_PENDING:
            names = sorted(set(self.session.pending_tools()))
            self.status_line = f"tool-pending: {', '.join(names)}"
        elif state is State.IDLE and self.machine.muted:
            self.status_line = "idle, microphone muted"
        else:
            self.status_line = state.value
        log.info("state: %s", self.status_line, extra={"LIVE_STATE": state.value})
        if self.ha_device is not None:
            self.ha_device.show_state(state.value)

    def _observe_signal(self, active: bool) -> None:
        self._observe(Observation("signal", "activityStart" if active else "activityEnd"))

    # -- the Live session's callbacks --------------------------------------------------------
    def on_connection(self, status: ConnectionStatus) -> None:
        if status.state is ConnectionState.CONNECTED:
            self.dispatch(Connected())
            self._connected_once = True
            self._check_ready()
        elif status.state is ConnectionState.RECONNECTING:
            self.dispatch(Reconnecting(status.delay_s or 0.0, status.detail))
            code = status.report.code if status.report else None
            after = f"{code} {status.detail}" if code is not None else status.detail
            self.status_line = f"reconnecting in {status.delay_s or 0:.1f} s after {after}"

    def on_gate(self, shut: bool, calls: tuple[tuple[str, str], ...]) -> None:
        # Called in the same loop step as the toolCall: the LED lights before any await.
        self.dispatch(ToolCallStarted(calls) if shut else GateOpened())
        if shut:
            self._observe(Observation("tool-call", ", ".join(name for _, name in calls)))

    def on_background(self, calls: tuple[tuple[str, str], ...]) -> None:
        self.indicators.tool_running(bool(calls))
        self._observe(Observation("tool-running", ", ".join(name for _, name in calls)))

    def on_audio(self, pcm: bytes) -> None:
        if self.machine.accepting_audio:
            self.sink.write(pcm)
        self.dispatch(ModelAudio())

    def on_interrupted(self) -> None:
        self.dispatch(Interrupted())

    def on_turn_complete(self) -> None:
        self.dispatch(TurnComplete())

    def on_transcript(self, source: str, text: str) -> None:
        log.debug("%s said: %s", source, text)
        self._observe(Observation(f"{source}-said", text))

    def on_tool_result(self, call_id: str, name: str, payload: dict[str, Any], ms: float) -> None:
        ok = "error" not in payload
        log.info(
            "tool %s answered in %.0f ms%s",
            name,
            ms,
            "" if ok else f": {payload['error']}",
            extra={"TOOL_NAME": name, "TOOL_CALL_ID": call_id, "TOOL_MS": round(ms, 1)},
        )
        self._observe(Observation("tool-result", f"{name} → {payload}"))

    def on_usage(self, usage: dict[str, Any]) -> None:
        if self.session.session_id != self._usage_session:
            self._usage_session = self.session.session_id
            self.usage.new_session()
        turn = self.usage.record(usage, self._clock().date())
        today, priced = self.usage.today, self.usage.prices is not None
        log.info(
            "usage: this turn %d tokens in, %d out%s; this conversation %d in, %d out; "
            "today %d in, %d out%s",
            turn.tokens_in,
            turn.tokens_out,
            f", about ${turn.cost:.4f}" if priced else "",
            self.usage.session.tokens_in,
            self.usage.session.tokens_out,
            today.tokens_in,
            today.tokens_out,
            f", about ${today.cost:.4f}" if priced else "",
            extra={
                "TOKENS_IN": turn.tokens_in,
                "TOKENS_OUT": turn.tokens_out,
                "COST_EST": round(turn.cost, 6) if priced else None,
            },
        )
        self._show_usage()
        if self._spent_budget() is not None:
            self._budget_spent.set()

    def _show_usage(self) -> None:
        if self.ha_device is not None:
            day = self._clock().date()
            today = self.usage.on(day)
            self.ha_device.show_usage(
                day, today.tokens_in + today.tokens_out, today.cost if self.usage.prices else None
            )

    # -- the daily budget ---------------------------------------------------------------------
    def _spent_budget(self) -> DailyBudget | None:
        """The budget, if today's is spent."""
        day = self._clock().date()
        if self.budget is not None and self.budget.spent(self.usage.on(day), day):
            return self.budget
        return None

    async def _session_within_budget(self) -> None:
        """Run the session until today's budget is spent and the reply that spent it has
        played; raises :class:`LiveSessionFatal` as ``run()`` does."""
        self._budget_spent.clear()
        session = asyncio.create_task(self.session.run(), name="live-run")
        watch = asyncio.create_task(self._end_once_spent(session), name="budget-watch")
        try:
            await asyncio.wait({session})
        finally:
            watch.cancel()
            session.cancel()
            await asyncio.gather(watch, session, return_exceptions=True)
        if not session.cancelled():
            session.result()

    async def _end_once_spent(self, session: asyncio.Task[None]) -> None:
        await self._budget_spent.wait()
        # The answer that spent the budget is heard to its end; ending the session first
        # would flush it mid-word.
        while self.machine.playing or self.sink.playing:
            await self.sink.wait_idle()
            await asyncio.sleep(PLAYBACK_RECHECK_S)
        session.cancel()

    async def _wait_out_budget(self, budget: DailyBudget) -> None:
        """Open no session until the next day, or a long press overrides today's budget."""
        now = self._clock()
        cost = self.usage.on(now.date()).cost
        cause = (
            f"today's budget of ${budget.limit:.2f} is spent "
            f"(about ${cost:.2f}): no session opens until tomorrow"
        )
        if self.settings.button.pin is not None:
            cause += "; a long press on the button goes on today"
        log.warning(
            "%s",
            cause,
            extra={
                "BUDGET_USD": budget.limit,
                "COST_TODAY": round(cost, 6),
            },
        )
        self._retry.clear()
        self.dispatch(SessionFailed(cause, long_press_retries=True))
        self.status_line = f"paused: {cause}"
        try:
            async with asyncio.timeout(seconds_until_tomorrow(now)):
                await self._retry.wait()
        except TimeoutError:
            log.info("a new day: the budget starts again, opening the session")
            return
        budget.override(self._clock().date())
        log.warning("budget overridden by a long press: sessions open for the rest of today")

    # -- tasks ------------------------------------------------------------------------------
    async def _capture(self) -> None:
        """Frames from the mic, to the uplink."""
        async for frame in self.source:
            if not self._heard_once:
                self._heard_once = True
                self._check_ready()
            self.uplink.take(frame, self.sink.playing)

    async def _live(self) -> None:
        """Keep the session running; after a fatal error, wait for a retry (button press);
        while today's budget is spent, open none."""
        while True:
            if (budget := self._spent_budget()) is not None:
                await self._wait_out_budget(budget)
                continue
            try:
                await self._session_within_budget()
            except LiveSessionFatal as exc:
                # The closure was already logged with its details; no traceback adds to it.
                log.error("Live session stopped: %s", exc.report.cause)  # noqa: TRY400
                self.dispatch(SessionFailed(exc.report.cause))
                self.status_line = f"error: {exc.report.cause}"
                self._retry.clear()
                await self._retry.wait()
                self.session.policy.fatal_count = 0

    async def _playback(self) -> None:
        """Notice when the speaker has played everything it was given.

        Woken by events, not a poll (a 50 Hz poll costs about 1 % of a core on its own): the
        machine starting to play, then the sink going idle. Compared as levels, so a short
        reply that started and finished before this task ran still counts.
        """
        while True:
            await self._playing.wait()
            await self.sink.wait_idle()
            if self.machine.playing and not self.sink.playing:
                self.dispatch(PlaybackIdle())
            if self.machine.playing:
                # More audio arrived at once, or the machine kept playing: look again shortly
                # rather than spin on an idle sink.
                await asyncio.sleep(PLAYBACK_RECHECK_S)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop in order: playback flushed, every task
        cancelled and finished (the session closed, pending calls abandoned), audio released,
        and only then the hardware: button released, outputs and LEDs off.

        The hardware goes last because a task being cancelled still drives it: abandoning a
        pending call darkens the tool-pending LED, which must not be closed by then."""
        loop = asyncio.get_running_loop()
        if self.settings.button.pin is not None:
            self._button = TalkButton(self.settings.button, self._pin_factory, self.dispatch, loop)
        if self.settings.mute.pin is not None:
            self._mute_switch = MuteSwitch(
                self.settings.mute, self._pin_factory, self.dispatch, loop
            )
        try:
            async with self.source, self.sink, asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._live(), name="live-session"),
                    group.create_task(self._capture(), name="capture"),
                    group.create_task(self.uplink.run(), name="uplink"),
                    group.create_task(self._playback(), name="playback-watch"),
                    group.create_task(self.health_reporter.run(), name="health"),
                ]
                if self.mqtt is not None:
                    tasks.append(group.create_task(self.mqtt.run(), name="mqtt"))
                await stop.wait()
                log.info("stopping")
                self.supervisor.stopping()
                self.sink.flush()
                if self.ha_device is not None:
                    await self.ha_device.goodbye()
                for task in tasks:
                    task.cancel()
        finally:
            if self._button is not None:
                self._button.close()
            if self._mute_switch is not None:
                self._mute_switch.close()
            try:
                self.outputs.close()
            finally:
                self.indicators.close()
            if self.home_assistant is not None:
                await self.home_assistant.aclose()


async def announce_ready(daemon: Daemon) -> None:
    """Tell the supervisor start-up is over: once audio flows and the first session is
    connected, or after ``ready_timeout_s`` with the status saying what is missing."""
    timeout = daemon.settings.ready_timeout_s
    try:
        async with asyncio.timeout(timeout):
            await daemon.ready.wait()
    except TimeoutError:
        missing = [
            what
            for what, done in (
                ("no audio from the microphone", daemon._heard_once),
                ("not connected", daemon._connected_once),
            )
            if not done
        ]
        why = f"started without {' and '.join(missing)} after {timeout:g} s"
        log.warning("%s; %s", why, daemon.status_line)
        daemon.supervisor.status(f"{why}: {daemon.status_line}")
    daemon.supervisor.ready()


async def serve(daemon: Daemon, watchdog: Watchdog | None = None) -> None:
    """Run ``daemon`` until SIGTERM or SIGINT; SIGHUP reloads its config. ``watchdog``, if
    given, pings systemd while the daemon is healthy."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        # Before the first READY=1 systemd is still starting the unit, and a READY=1 here would
        # end start-up before audio and the session are up: the reload then goes ahead unsaid.
        announced = announcing.done() and not stop.is_set()
        if announced:
            daemon.supervisor.reloading()
        daemon.reload()
        if announced:
            daemon.supervisor.ready()
            daemon.supervisor.status(daemon.status_line)

    loop.add_signal_handler(signal.SIGHUP, reload)
    async with asyncio.TaskGroup() as group:
        announcing = group.create_task(announce_ready(daemon), name="ready")
        watching = None if watchdog is None else group.create_task(watchdog.run(), name="watchdog")
        await daemon.run(stop)
        announcing.cancel()
        if watching is not None:
            watching.cancel()


def credentials(settings: Settings) -> list[str | None]:
    """The secrets ``settings`` carry, for the log redactor (the API key is known to it)."""
    return [
        settings.mqtt.password if settings.mqtt is not None else None,
        settings.home_assistant.token if settings.home_assistant is not None else None,
    ]


def open_pins(settings: Settings) -> Any:
    """The pin factory the parts are built on, or None where none is fitted.

    Raises :class:`device.pins.PinDriverError` when the driver cannot be had.
    """
    fitted = (
        settings.button.pin,
        settings.leds.status_pin,
        settings.leds.tool_pin,
        *(o.pin for o in settings.outputs),
    )
    if all(pin is None for pin in fitted):
        log.info("GPIO: no button, LEDs or outputs configured; no pin driver needed")
        return None
    name = pins.choose_factory(settings.gpio.pin_factory)
    factory = pins.open_factory(name)
    log.info("GPIO: %s", pins.describe_factory(name, factory), extra={"PIN_FACTORY": name})
    return factory


def _refuse_to_start(problem: ConfigError | pins.PinDriverError, config: Path) -> int:
    """One line in the journal and on stderr, and 78: a restart cannot mend it."""
    key = problem.key if isinstance(problem, ConfigError) else "gpio.pin_factory"
    log.error("%s", problem, extra={"CONFIG_FILE": str(config), "CONFIG_KEY": key or None})
    print(f"pi-live-voice: {problem}", file=sys.stderr)
    return EX_CONFIG


def run_daemon(config: Path) -> int:
    """``pi-live-voice run``: load the config, take the single-instance lock, build the real
    hardware, serve."""
    try:
        settings = load_settings(config)
        protect(credentials(settings))
        api_key = require_api_key(config)
    except ConfigError as exc:
        return _refuse_to_start(exc, config)
    lock = InstanceLock(config)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        log.error("%s", exc)  # noqa: TRY400 - the message is the whole story
        print(f"pi-live-voice: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except OSError as exc:
        # No lock is no reason to leave the device dead: run, unguarded, and say so.
        log.warning("cannot take the single-instance lock %s: %s", lock.path, exc.strerror)
    try:
        return _serve_hardware(settings, api_key)
    finally:
        lock.release()


def _serve_hardware(settings: Settings, api_key: str) -> int:
    """Open the pins (after the lock: a second daemon must not claim them), then serve."""
    try:
        pin_factory = open_pins(settings)
    except pins.PinDriverError as exc:
        return _refuse_to_start(exc, settings.path)
    try:
        supervisor = SystemdSupervisor()
        daemon = Daemon(
            settings,
            api_key,
            source=AlsaAudioSource(settings.capture),
            sink=AlsaAudioSink(settings.playback),
            pin_factory=pin_factory,
            supervisor=supervisor,
        )
        period = watchdog_period(os.environ, os.getpid())
        watchdog = None
        if period is not None and supervisor.enabled:
            watchdog = Watchdog(period, daemon.capture_progress, supervisor.watchdog)
        asyncio.run(serve(daemon, watchdog))
    finally:
        if pin_factory is not None:
            pin_factory.close()
    return 0
