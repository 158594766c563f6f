"""Stopping with a tool call pending: SIGTERM or SIGINT through ``serve``, as systemd sends it."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.capture import AlsaAudioSource
from device.daemon import Daemon, serve
from device.playback import AlsaAudioSink
from device.virtual_audio import FifoMic
from services.tools.registry import ToolSpec
from tests.conftest import API_KEY, EmulatorFactory
from tests.daemon.conftest import LIGHT_PIN, STATUS_PIN, TOOL_PIN, daemon_settings

LIGHT_ON = {"name": "set_output", "args": {"name": "kitchen_light", "on": True}}
SCENARIO = {"turns": [{"tool_calls": [LIGHT_ON, {"name": "slow_lock"}], "reply": "ok"}]}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_a_call_is_pending_stops_cleanly_with_outputs_off(
    *,
    emulator_factory: EmulatorFactory,
    request_speech: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    signum: signal.Signals,
) -> None:
    started = asyncio.Event()

    async def slow_lock(args: dict[str, Any]) -> str:
        started.set()
        await asyncio.sleep(30)
        return "locked"

    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PLV_MIC_IN", str(fifo))
    monkeypatch.setenv("PLV_SPEAKER_OUT", str(tmp_path / "speaker.raw"))
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    factory = MockFactory(pin_class=MockPWMPin)
    mic = FifoMic(fifo)
    mic.start()
    caplog.set_level(logging.INFO)
    try:
        async with emulator_factory(SCENARIO, pace=0.2) as em:
            settings = daemon_settings(em, "always")
            daemon = Daemon(
                settings,
                API_KEY,
                source=AlsaAudioSource(settings.capture),
                sink=AlsaAudioSink(settings.playback),
                pin_factory=factory,
                extra_tools=(ToolSpec("slow_lock", "a slow door lock", slow_lock),),
            )
            serving = asyncio.create_task(serve(daemon), name="serve-under-test")
            async with asyncio.timeout(30):
                await daemon.ready.wait()  # serve's signal handlers are in place by now
                mic.say(request_speech)
                await started.wait()
            assert factory.pin(TOOL_PIN).state == 1
            assert factory.pin(LIGHT_PIN).state == 1
            os.kill(os.getpid(), signum)
            async with asyncio.timeout(15):
                await serving  # returns normally: `pi-live-voice run` exits 0
            del serving
            gc.collect()  # a task whose exception nobody retrieved is reported when collected
            await asyncio.sleep(0)
    finally:
        await asyncio.to_thread(mic.stop)
        loop.set_exception_handler(None)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        outputs = {pin: factory.pin(pin).state for pin in (LIGHT_PIN, STATUS_PIN, TOOL_PIN)}
        factory.reset()

    assert unhandled == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert outputs == {LIGHT_PIN: 0, STATUS_PIN: 0, TOOL_PIN: 0}
