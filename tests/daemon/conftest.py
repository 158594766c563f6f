"""A whole daemon under test: real ALSA PCMs, mock GPIO pins, the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.capture import AlsaAudioSource
from device.config import Settings, parse_settings
from device.daemon import Daemon, Observation
from device.playback import AlsaAudioSink
from device.virtual_audio import FifoMic, speak
from services.emulator.server import Emulator
from services.tools.registry import ToolSpec
from tests.conftest import API_KEY, EmulatorFactory

LIGHT_PIN = 5
BUTTON_PIN = 17
STATUS_PIN = 22
TOOL_PIN = 27
MUTE_PIN = 23


@pytest.fixture(scope="session")
def request_speech() -> bytes:
    return speak("Turn on the kitchen light, please.")


@dataclass
class Rig:
    """The running daemon and everything around it."""

    emulator: Emulator
    factory: MockFactory
    mic: FifoMic
    speaker: Path
    seen: list[tuple[float, Observation]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    daemon: Daemon = field(init=False)

    def observe(self, observation: Observation) -> None:
        self.seen.append((time.monotonic(), observation))
        self.changed.set()

    def kinds(self, kind: str) -> list[str]:
        return [o.detail for _, o in self.seen if o.kind == kind]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def wait_state(self, state: str, within: float = 15.0) -> None:
        await self.wait_for(lambda: self.daemon.machine.state.value == state, within)

    def pin(self, number: int) -> Any:
        return self.factory.pin(number)

    def signals(self) -> list[str]:
        return [
            r["kind"]
            for r in self.emulator.trace.select("in")
            if r["kind"] in ("activityStart", "activityEnd")
        ]


RigFactory = Callable[..., contextlib.AbstractAsyncContextManager[Rig]]


def daemon_settings(em: Emulator, mode: str, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "live": {"endpoint": em.base_url, "ca_file": str(em.settings.cert_out), "model": "test"},
        "audio": {"capture_device": "plv_mic", "playback_device": "plv_speaker"},
        "vad": {"hangover_ms": 400},
        "button": {"pin": BUTTON_PIN, "mode": mode, "long_press_s": 0.6, "bounce_ms": 0},
        "leds": {"status_pin": STATUS_PIN, "tool_pending_pin": TOOL_PIN},
        "outputs": [{"name": "kitchen_light", "pin": LIGHT_PIN, "kind": "relay"}],
    }
    for name, values in sections.items():
        if isinstance(values, list):
            data[name] = values  # an array of tables ([[tools]], [[outputs]]) replaces
        else:
            data.setdefault(name, {}).update(values)
    return parse_settings(data, Path("test-config.toml"))


@pytest.fixture
def rig_factory(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RigFactory:
    """Start a daemon against a stand-in playing ``scenario``; stop it at the end."""

    @contextlib.asynccontextmanager
    async def start(
        scenario: dict[str, Any],
        *,
        mode: str = "always",
        extra_tools: tuple[ToolSpec, ...] = (),
        pace: float = 0.2,
        api_key: str = API_KEY,
        first_state: str = "idle",
        clock: Callable[[], dt.datetime] = dt.datetime.now,
        **sections: Any,
    ) -> AsyncIterator[Rig]:
        fifo = tmp_path / "mic.fifo"
        os.mkfifo(fifo)
        speaker = tmp_path / "speaker.raw"
        monkeypatch.setenv("PLV_MIC_IN", str(fifo))
        monkeypatch.setenv("PLV_SPEAKER_OUT", str(speaker))
        mic = FifoMic(fifo)
        mic.start()
        factory = MockFactory(pin_class=MockPWMPin)
        async with emulator_factory(scenario, pace=pace) as em:
            settings = daemon_settings(em, mode, **sections)
            rig = Rig(em, factory, mic, speaker)
            rig.daemon = Daemon(
                settings,
                api_key,
                source=AlsaAudioSource(settings.capture),
                sink=AlsaAudioSink(settings.playback),
                pin_factory=factory,
                extra_tools=extra_tools,
                observe=rig.observe,
                clock=clock,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(rig.daemon.run(stop), name="daemon-under-test")
            try:
                await rig.wait_state(first_state)
                yield rig
            finally:
                stop.set()
                try:
                    async with asyncio.timeout(10):
                        await task
                finally:
                    await asyncio.to_thread(mic.stop)
                    factory.reset()

    return start
