"""The daemon under measurement, in a process of its own: ``python -m bench.probe PLAN OUT``.

The whole :class:`~device.daemon.Daemon` runs here as ``pi-live-voice run`` builds it — real
ALSA PCMs of the virtual sound card, gpiozero mock pins, the real SDK — against stand-ins the
parent process serves, so their work never shares this process's CPU or interpreter lock. The
only additions are the clock points of :mod:`bench.instrument`. The probe drives the plan and
writes every stamp to ``OUT`` as JSON; the parent turns them into latencies.

For a scaling plan the microphone is fast-forwarded (:class:`ReplaySource`) and the probe
prints one JSON line per checkpoint on stdout, so the parent can size its stand-in then too.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gpiozero.pins.mock import MockFactory, MockPWMPin

from bench import plans
from bench.instrument import PcmLog, TimedLiveSession, paced_opener
from bench.mic import ScriptedMic, speech_end
from bench.standin import API_KEY
from bench.waiting import until
from device.audio import AudioSource, CaptureStats
from device.capture import AlsaAudioSource
from device.config import Settings, parse_settings
from device.daemon import Daemon, Observation
from device.frames import FrameBridge
from device.playback import AlsaAudioSink
from device.vad import level_db
from device.virtual_audio import MIC_PCM, SPEAKER_PCM, install_asoundrc, speak
from services.live.session import SessionEvents
from services.tools.registry import ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

ROUND_TIMEOUT_S = 20.0
POLL_S = 0.01
MAX_OBSERVATIONS = 200_000
SLOW_TOOL_S = 0.2
FRAME_BYTES = 640  # 20 ms at 16 kHz
PAUSE_BETWEEN_ROUNDS_S = 0.2
# A fast-forwarded minute that takes longer than this has stopped being fast-forwarded.
SCALING_LIMIT_S_PER_MIN = 20.0


class Rig:
    """One daemon, its pins, and everything it reported."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: AudioSource | None = None,
        tools: tuple[ToolSpec, ...] = (),
        paced: bool = True,
        keep: bool = True,
    ) -> None:
        self.factory = MockFactory(pin_class=MockPWMPin)
        self.pcm = PcmLog()
        self.seen: list[tuple[float, str, str]] = []
        self.sink = (
            AlsaAudioSink(settings.playback, opener=paced_opener(self.pcm))
            if paced
            else AlsaAudioSink(settings.playback)
        )
        made: list[TimedLiveSession] = []

        def timed(registry: ToolRegistry, events: SessionEvents) -> TimedLiveSession:
            # The daemon's own session, built as the daemon builds it, with clock points added.
            made.append(
                TimedLiveSession(settings.live, registry, API_KEY, events, keep_stamps=keep)
            )
            return made[-1]

        self.daemon = Daemon(
            settings,
            API_KEY,
            source=source or AlsaAudioSource(settings.capture),
            sink=self.sink,
            pin_factory=self.factory,
            extra_tools=tools,
            observe=self.observe,
            session=timed,
        )
        self.session = made[0]
        self._keep = keep
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def observe(self, observation: Observation) -> None:
        """The daemon's observer: stamp and keep (unless told to keep nothing)."""
        if self._keep and len(self.seen) < MAX_OBSERVATIONS:
            self.seen.append((time.monotonic(), observation.kind, observation.detail))

    @property
    def state(self) -> str:
        """The state machine's state."""
        return self.daemon.machine.state.value

    async def wait_for(self, done: Callable[[], bool], within: float = ROUND_TIMEOUT_S) -> None:
        """Until ``done()`` holds: the daemon's state, the session's counts and the mic's queue
        change without one event to wait on, so they are polled."""
        await until(done, every=POLL_S, within=within)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.daemon.run(self._stop), name="daemon")
        try:
            await self.wait_for(lambda: self.state == "idle")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._task is not None:
            async with asyncio.timeout(10):
                await self._task
        self.factory.reset()

    def record(self) -> dict[str, Any]:
        """Every stamp, JSON-ready."""
        return {
            "received": [asdict(r) for r in self.session.received],
            "responded": self.session.responded,
            "observations": self.seen,
            "writes": self.pcm.writes,
            "drops": self.pcm.drops,
        }


def _settings(endpoint: plans.Endpoint, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "live": {"endpoint": endpoint.url, "ca_file": endpoint.ca_file, "model": "bench"},
        "audio": {"capture_device": MIC_PCM, "playback_device": SPEAKER_PCM},
        "leds": {"status_pin": plans.STATUS_PIN, "tool_pending_pin": plans.TOOL_PIN},
        "outputs": [{"name": plans.LIGHT, "pin": plans.LIGHT_PIN, "kind": "relay"}],
    }
    data.update(sections)
    return parse_settings(data, Path("<bench config>"))


def _slow_tool() -> ToolSpec:
    async def slow_switch(args: dict[str, Any]) -> str:
        # Like a Home Assistant or MQTT action: long enough that a fault finds it pending.
        await asyncio.sleep(SLOW_TOOL_S)
        return "switched"

    return ToolSpec(plans.SLOW_TOOL, "a slow remote switch", slow_switch)


async def _button_round(rig: Rig, r: plans.ButtonRound, injected: list[float]) -> None:
    button = rig.factory.pin(plans.BUTTON_PIN)
    target = rig.session.turns_completed + r.turns
    button.drive_low()
    await asyncio.sleep(r.hold_s)
    button.drive_high()
    if r.kind == "barge":
        await rig.wait_for(lambda: rig.state == "speaking")
        await asyncio.sleep(r.barge_after_s)
        # The service's own barge-in: the activityStart goes out through the session, so the
        # daemon's VAD has flushed nothing already and the interrupted alone stops playback.
        before = sum(1 for x in rig.session.received if x.interrupted)
        injected.append(time.monotonic())
        await rig.session.set_activity(True)
        await rig.wait_for(lambda: sum(1 for x in rig.session.received if x.interrupted) > before)
        await rig.session.set_activity(False)
    await rig.wait_for(
        lambda: (
            rig.session.turns_completed >= target
            and rig.state == "idle"
            and not rig.session.gate.shut
        )
    )


async def _button_phase(plan: plans.LatencyPlan) -> dict[str, Any]:
    settings = _settings(
        plan.button,
        button={"pin": plans.BUTTON_PIN, "mode": "hold", "bounce_ms": 0},
        mqtt={"host": "127.0.0.1", "port": plan.mqtt_port},
        tools=[plans.MQTT_TOOL_DECLARATION],
    )
    injected: list[float] = []
    done = 0
    error = None
    last_fault = -plans.FAULT_SPACING_S
    async with Rig(settings, tools=(_slow_tool(),)) as rig:
        try:
            for r in plan.rounds:
                if r.kind == "fault":
                    await asyncio.sleep(last_fault + plans.FAULT_SPACING_S - time.monotonic())
                await _button_round(rig, r, injected)
                if r.kind == "fault":
                    last_fault = time.monotonic()
                done += 1
                await asyncio.sleep(PAUSE_BETWEEN_ROUNDS_S)
        except TimeoutError:
            error = f"round {done} ({plan.rounds[done].kind}) did not finish"
        record = rig.record()
    if error:
        log.error("button phase: %s", error)
    return {**record, "injected": injected, "rounds_done": done, "error": error}


async def _speech_phase(plan: plans.LatencyPlan, mic: ScriptedMic) -> dict[str, Any]:
    settings = _settings(
        plan.speech, button={"pin": False, "mode": "always"}, vad={"hangover_ms": plan.hangover_ms}
    )
    fixtures = []
    for n in range(plan.utterances):
        text, voice, wpm = plans.UTTERANCES[n % len(plans.UTTERANCES)]
        pcm = await asyncio.to_thread(speak, text, voice, wpm)
        fixtures.append((pcm, speech_end(pcm)))
    ends: list[float | None] = []
    done = 0
    error = None
    async with Rig(settings) as rig:
        try:
            for pcm, end in fixtures:
                target = rig.session.turns_completed + 1
                mark = mic.say(pcm, mark_at=end)
                await rig.wait_for(
                    lambda: (
                        rig.session.turns_completed >= target  # noqa: B023
                        and rig.state == "idle"
                        and mic.idle
                    )
                )
                ends.append(mark.at if mark is not None else None)
                done += 1
                # Past the echo tail, so the next utterance is heard whole.
                await asyncio.sleep(PAUSE_BETWEEN_ROUNDS_S + settings.echo.tail_ms / 1000)
        except TimeoutError:
            error = f"utterance {done} got no answer"
        record = rig.record()
    if error:
        log.error("speech phase: %s", error)
    return {**record, "speech_ends": ends, "rounds_done": done, "error": error}


class ReplaySource:
    """A fast-forwarded microphone: frames of a looped script, ``speed`` times real time.

    The daemon's loop takes them one by one (each ``__anext__`` yields to the loop), so every
    frame is processed and none is dropped; while paused, frames are discarded and counted as
    gated, as the ALSA source does. ``on_frame`` hears the count after each frame."""

    def __init__(self, script: list[bytes], speed: float, on_frame: Callable[[int], None]) -> None:
        self.paused = False
        self._script = script
        self._period = 0.02 / speed
        self._on_frame = on_frame
        self._n = 0
        self._gated = 0
        self._gated_levels: deque[float] = deque(maxlen=FrameBridge.GATED_LEVELS)
        self._started: float | None = None

    @property
    def frame_bytes(self) -> int:
        """20 ms at 16 kHz."""
        return FRAME_BYTES

    @property
    def stats(self) -> CaptureStats:
        """Frames taken and gated."""
        return CaptureStats(frames_in=self._n, dropped=0, gated=self._gated, xruns=0, reopens=0)

    def take_gated_levels(self) -> list[float]:
        """Loudness of the frames gated since the last call, as the ALSA source keeps it."""
        levels = list(self._gated_levels)
        self._gated_levels.clear()
        return levels

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._started is None:
            self._started = time.monotonic()
        while True:
            # Ahead of the fast-forwarded clock: wait; behind it: just let the loop breathe.
            ahead = self._started + self._n * self._period - time.monotonic()
            await asyncio.sleep(max(0.0, ahead))
            frame = self._script[self._n % len(self._script)]
            self._n += 1
            self._on_frame(self._n)
            if not self.paused:
                return frame
            self._gated += 1
            self._gated_levels.append(level_db(frame))


def _size(obj: object, attr: str) -> int:
    """Size of an internal container, read by name: a renamed one shows as -1, not a crash."""
    value = getattr(obj, attr, None)
    if value is None:
        return -1
    if hasattr(value, "qsize"):
        return int(value.qsize())
    if hasattr(value, "running"):
        return int(value.running)
    try:
        return len(value)
    except TypeError:
        return -1


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sizes(rig: Rig, minutes: float) -> dict[str, float]:
    session = rig.session
    health = rig.daemon.health()
    return {
        "minutes": minutes,
        "turns": session.turns_completed,
        "tool_calls": session.stats.tool_calls,
        "reconnects": session.stats.reconnects,
        "frames_sent": session.stats.frames_sent,
        "gated_frames": health["GATED_FRAMES"],
        "uplink_queue": _size(rig.daemon, "_uplink"),
        "pending_calls": len(session.gate.pending),
        "call_start_times": len(session.protocol.calls),
        "running_tools": _size(session, "_dispatcher"),
        "closure_reports": len(session.closures),
        "speaker_queue": _size(rig.sink, "_queue"),
        "gc_objects": len(gc.get_objects()),
        # gpiozero's mock pins record every change they see; a real pin keeps no history.
        "mock_pin_history": sum(len(pin.states) for pin in rig.factory.pins.values()),
        "rss_mib": round(_rss_mib(), 1),
        "cpu_s": round(time.process_time(), 2),
    }


async def _scaling(plan: plans.ScalingPlan) -> dict[str, Any]:
    text, voice, wpm = plans.UTTERANCES[0]
    speech = await asyncio.to_thread(speak, text, voice, wpm)
    silence = b"\x00" * (FRAME_BYTES * 50)  # 1 s
    audio = silence + speech + silence * 2
    script = [
        audio[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\x00")
        for i in range(0, len(audio), FRAME_BYTES)
    ]
    checkpoints = list(plan.checkpoints_min)
    reached: list[dict[str, float]] = []
    finished = asyncio.Event()

    def on_frame(n: int) -> None:
        if checkpoints and n * 0.02 / 60 >= checkpoints[0]:
            sizes = _sizes(rig, checkpoints.pop(0))
            reached.append(sizes)
            print(json.dumps({"checkpoint": sizes}), flush=True)
            if not checkpoints:
                finished.set()

    settings = _settings(plan.endpoint, button={"pin": False, "mode": "always"})
    # Frames flow only once the rig is entered, after ``rig`` is bound.
    rig = Rig(settings, source=ReplaySource(script, plan.speed, on_frame), paced=False, keep=False)
    started = time.monotonic()
    async with rig, asyncio.timeout(SCALING_LIMIT_S_PER_MIN * max(plan.checkpoints_min)):
        await finished.wait()
    return {"checkpoints": reached, "wall_s": time.monotonic() - started}


async def _latency(plan: plans.LatencyPlan, mic: ScriptedMic) -> dict[str, Any]:
    return {"button": await _button_phase(plan), "speech": await _speech_phase(plan, mic)}


def main(argv: list[str] | None = None) -> int:
    """Run the plan in ``argv[0]``; write the stamps to ``argv[1]``."""
    args = sys.argv[1:] if argv is None else argv
    plan = plans.read_plan(Path(args[0]))
    out = Path(args[1])
    logging.basicConfig(level=logging.WARNING, format="probe %(levelname)s %(name)s: %(message)s")
    home = Path(tempfile.mkdtemp(prefix="plv-probe-"))
    try:
        # alsa-lib reads its configuration once: the virtual card must exist before any PCM.
        install_asoundrc(home)
        os.environ["PLV_SPEAKER_OUT"] = os.devnull
        if isinstance(plan, plans.LatencyPlan):
            fifo = home / "mic.fifo"
            os.mkfifo(fifo)
            os.environ["PLV_MIC_IN"] = str(fifo)
            mic = ScriptedMic(fifo)
            mic.start()
            try:
                result = asyncio.run(_latency(plan, mic))
            finally:
                mic.stop()
        else:
            result = asyncio.run(_scaling(plan))
        out.write_text(json.dumps(result), encoding="utf-8")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
