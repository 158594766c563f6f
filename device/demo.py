"""``pi-live-voice demo``: the whole daemon, on this machine, with nothing to plug in.

The daemon runs exactly as ``pi-live-voice run`` builds it, against the local Gemini Live
stand-in, with a virtual sound card (:mod:`device.virtual_audio`: espeak-ng speaks into a
FIFO microphone, the speaker writes to a file) and gpiozero's mock pins in place of the Pi's
header. The user asks for the kitchen light, the model calls ``set_output``, and the timeline
shows the tool-pending window: the dedicated LED lit, capture paused, nothing sent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.capture import AlsaAudioSource
from device.config import Settings, parse_settings
from device.daemon import Daemon, Observation
from device.playback import AlsaAudioSink
from device.virtual_audio import MIC_PCM, SPEAKER_PCM, FifoMic, install_asoundrc, speak
from services.emulator.background import background_emulator
from services.emulator.scenario import default_scenario
from services.emulator.server import Emulator, EmulatorSettings
from services.emulator.trace import TraceRecord

REQUESTS = ("Turn on the kitchen light.", "Thank you.")
LIGHT_PIN = 5
TOOL_LED_PIN = 27
TURN_TIMEOUT_S = 30.0
REALTIME_INPUT = ("audio", "activityStart", "activityEnd", "audioStreamEnd")


@dataclass
class Timeline:
    """What the daemon reported, with the time it happened."""

    seen: list[tuple[float, Observation]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def observe(self, observation: Observation) -> None:
        """The daemon's ``observe`` callback."""
        self.seen.append((time.monotonic(), observation))
        self.changed.set()

    def times(self, kind: str, detail: str) -> list[float]:
        """When observations of ``kind`` with ``detail`` happened."""
        return [t for t, o in self.seen if o.kind == kind and o.detail == detail]

    async def wait_for(self, done: Callable[[], bool], within: float) -> None:
        """Wait until ``done()`` holds after some observation."""
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()


def demo_settings(emulator: Emulator) -> Settings:
    """The embedded default config: open mic, one relay, both LEDs, the stand-in's endpoint."""
    data: dict[str, Any] = {
        "live": {
            "endpoint": emulator.base_url,
            "ca_file": str(emulator.settings.cert_out),
            "model": "gemini-live-demo",
        },
        "audio": {"capture_device": MIC_PCM, "playback_device": SPEAKER_PCM},
        "button": {"mode": "always"},
        "leds": {"tool_pending_pin": TOOL_LED_PIN},
        "outputs": [
            {
                "name": "kitchen_light",
                "pin": LIGHT_PIN,
                "kind": "relay",
                "description": "the kitchen ceiling light",
            }
        ],
    }
    return parse_settings(data, Path("<demo config>"))


def _line(at: float, start: float, text: str) -> tuple[float, str]:
    return at, f"{1000 * (at - start):7.0f} ms  {text}"


def _device_lines(timeline: Timeline, start: float) -> list[tuple[float, str]]:
    lines = []
    said: list[str] = []
    said_from = 0.0
    for at, o in timeline.seen:
        if o.kind == "model-said":
            # A reply's transcript arrives word by word; one line, at its first word.
            said_from = said_from if said else at
            said.append(o.detail)
            continue
        if said:
            lines.append(_line(said_from, start, f"model says: {''.join(said).strip()!r}"))
            said = []
        text = {
            "state": f"device state → {o.detail}",
            "tool-led": f"TOOL-PENDING LED {o.detail.upper()}",
            "tool-call": f"tool call received: {o.detail} (input gate shut, capture paused)",
            "tool-result": f"tool answered: {o.detail}",
            "flush": "playback flushed",
        }.get(o.kind)
        if text is not None:
            lines.append(_line(at, start, text))
    return lines


def _wire_lines(records: list[TraceRecord], start: float) -> list[tuple[float, str]]:
    lines = []
    for r in records:
        kind = r.get("kind")
        if r["event"] == "violation":
            lines.append(_line(r["t"], start, f"!! {r['rule']}: {r['detail']}"))
        elif r["event"] == "in" and kind in ("activityStart", "activityEnd", "toolResponse"):
            lines.append(_line(r["t"], start, f"    wire → model: {kind}"))
        elif r["event"] == "out" and kind in ("toolCall", "serverContent.turnComplete"):
            lines.append(_line(r["t"], start, f"    wire ← model: {kind}"))
    return lines


@dataclass(frozen=True)
class DemoResult:
    """What the demo saw, for the report and the exit status."""

    lines: list[str]
    light_on: bool
    led_windows: list[tuple[float, float]]
    sent_in_windows: int
    violations: int


async def _converse(out: Path, fifo: Path) -> DemoResult:
    settings = EmulatorSettings(
        scenario=default_scenario(),
        cert_out=out / "emulator-cert.pem",
        port=0,
        trace_path=out / "trace.jsonl",
    )
    timeline = Timeline()
    factory = MockFactory(pin_class=MockPWMPin)
    mic = FifoMic(fifo)
    mic.start()
    try:
        async with background_emulator(settings) as emulator:
            config = demo_settings(emulator)
            daemon = Daemon(
                config,
                emulator.settings.api_key,
                source=AlsaAudioSource(config.capture),
                sink=AlsaAudioSink(config.playback),
                pin_factory=factory,
                observe=timeline.observe,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(daemon.run(stop), name="daemon")
            start = time.monotonic()
            try:
                await timeline.wait_for(lambda: daemon.machine.state.value == "idle", 15)
                for text in REQUESTS:
                    idle_before = len(timeline.times("state", "idle"))

                    def answered(n: int = idle_before) -> bool:
                        return len(timeline.times("state", "idle")) > n

                    mic.say(await asyncio.to_thread(speak, text))
                    await timeline.wait_for(answered, TURN_TIMEOUT_S)
                light_on = bool(factory.pin(LIGHT_PIN).state)
            finally:
                stop.set()
                await task
            records = emulator.trace.select()
    finally:
        await asyncio.to_thread(mic.stop)
        factory.reset()
    windows = list(
        zip(timeline.times("tool-led", "on"), timeline.times("tool-led", "off"), strict=False)
    )
    sent = sum(
        1
        for r in records
        if r["event"] == "in"
        and r.get("kind") in REALTIME_INPUT
        and any(on < r["t"] < off for on, off in windows)
    )
    merged = sorted(_device_lines(timeline, start) + _wire_lines(records, start))
    return DemoResult(
        lines=[text for _, text in merged],
        light_on=light_on,
        led_windows=windows,
        sent_in_windows=sent,
        violations=sum(1 for r in records if r["event"] == "violation"),
    )


def _write_wav(raw: Path, wav_path: Path, rate: int) -> None:
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(raw.read_bytes() if raw.exists() else b"")


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of the ``demo`` sub-command."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    speaker = out / "speaker.raw"
    speaker.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="plv-demo-") as tmp:
        # The virtual sound card must exist before this process opens its first PCM.
        install_asoundrc(Path(tmp))
        fifo = Path(tmp) / "mic.fifo"
        os.mkfifo(fifo)
        os.environ["PLV_MIC_IN"] = str(fifo)
        os.environ["PLV_SPEAKER_OUT"] = str(speaker)
        result = asyncio.run(_converse(out, fifo))
    reply_seconds = speaker.stat().st_size / 48000 if speaker.exists() else 0.0
    _write_wav(speaker, out / "reply.wav", 24000)
    speaker.unlink(missing_ok=True)

    print(f"You said: {' / '.join(repr(r) for r in REQUESTS)} (espeak-ng into the virtual mic)")
    print("Timeline (daemon events, and what crossed the wire):")
    for line in result.lines:
        print("  " + line)
    print()
    for on, off in result.led_windows:
        print(f"Tool-pending window: LED lit for {1000 * (off - on):.0f} ms")
    print(f"Realtime input sent inside that window: {result.sent_in_windows} frames")
    print(f"Kitchen light (GPIO{LIGHT_PIN}): {'ON' if result.light_on else 'off'}")
    print(f"Reply audio: {out / 'reply.wav'} ({reply_seconds:.1f} s; aplay it)")
    print(f"Full wire trace: {out / 'trace.jsonl'}")
    print(f"Protocol violations: {result.violations or 'none'}")
    ok = (
        result.light_on
        and len(result.led_windows) == 1
        and result.sent_in_windows == 0
        and result.violations == 0
    )
    return 0 if ok else 1
