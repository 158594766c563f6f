"""The mute switch on the whole daemon: real ALSA capture, a mock switch pin, the stand-in."""

from __future__ import annotations

import asyncio
import logging

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from bench.waiting import until
from device.events import MuteSwitched
from device.gpio import MUTED, PATTERNS, MuteSwitch
from device.gpio_settings import MuteSettings
from tests.daemon.conftest import MUTE_PIN, Rig, RigFactory
from tests.daemon.test_daemon import SCENARIO, assert_clean

# Half a second of capture after the mic went quiet: every frame of the request was read.
FRAMES_AFTER = 25
POLL_S = 0.02
FRAME_BYTES = 640  # 20 ms of 16 kHz mono s16le


def said_microphone(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Where the journal said the microphone's audio went, in order."""
    return [getattr(r, "MICROPHONE", "") for r in caplog.records if hasattr(r, "MICROPHONE")]


async def spoken_and_read(rig: Rig, speech: bytes) -> None:
    """Say ``speech`` into the mic and wait until the daemon has read all of it."""
    rig.mic.say(speech)
    await asyncio.to_thread(rig.mic.idle.wait, 15)
    read = rig.daemon.source.stats.frames_in
    await until(
        lambda: rig.daemon.source.stats.frames_in >= read + FRAMES_AFTER, every=POLL_S, within=15
    )


async def test_a_muted_mic_sends_nothing_shows_it_and_unmuted_works_again(
    rig_factory: RigFactory, request_speech: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.daemon")
    async with rig_factory(SCENARIO, mode="always", mute={"pin": MUTE_PIN}) as rig:
        switch = rig.pin(MUTE_PIN)
        switch.drive_low()  # closed (pull-up): muted
        await rig.wait_for(lambda: rig.daemon.machine.muted)
        status_led = rig.daemon.indicators.status
        assert status_led is not None
        assert status_led.pattern is MUTED
        assert rig.daemon.status_line == "idle, microphone muted"
        assert said_microphone(caplog) == ["local", "muted"]
        sent = len(rig.emulator.trace.select("in", kind="audio"))
        dropped = rig.daemon.source.stats.gated

        await spoken_and_read(rig, request_speech)
        # Dropped at the source: not one frame of the request reached the VAD.
        assert rig.daemon.source.stats.gated - dropped >= len(request_speech) // FRAME_BYTES
        assert rig.signals() == []
        assert len(rig.emulator.trace.select("in", kind="audio")) == sent
        assert rig.kinds("state")[-1] == "idle"

        switch.drive_high()
        await rig.wait_for(lambda: not rig.daemon.machine.muted)
        assert status_led.pattern is PATTERNS[status_led.showing or rig.daemon.machine.state]
        rig.mic.say(request_speech)
        await rig.wait_for(
            lambda: bool(rig.kinds("tool-result")) and rig.kinds("state")[-1:] == ["idle"]
        )
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"]
    assert said_microphone(caplog) == ["local", "muted", "local", "sending", "local"]


async def test_muting_mid_utterance_ends_the_turn_and_the_model_answers_what_it_heard(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    async with rig_factory(SCENARIO, mode="always", mute={"pin": MUTE_PIN}) as rig:
        rig.mic.say(request_speech)
        await rig.wait_state("listening")
        rig.pin(MUTE_PIN).drive_low()
        await rig.wait_for(lambda: rig.daemon.machine.muted)
        await rig.wait_for(
            lambda: bool(rig.kinds("tool-result")) and rig.kinds("state")[-1:] == ["idle"]
        )
        assert rig.daemon.status_line == "idle, microphone muted"
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"]
    # The activityEnd is where the switch closed the turn: no audio follows it.
    trace = rig.emulator.trace
    [end] = trace.select("in", kind="activityEnd")
    audio = trace.select("in", kind="audio")
    assert [r for r in audio if r["t"] > end["t"]] == []
    # It closed the turn mid-request, well before the request itself ended.
    assert len(audio) < len(request_speech) // FRAME_BYTES
    assert rig.daemon.source.stats.frames_in > 0
    assert rig.daemon.sink.stats.chunks_in > 0


class ClosedSwitchPin(MockPin):  # type: ignore[misc]
    """A pin held low by a closed switch: the pull-up cannot raise it."""

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self.drive_low()


async def test_a_switch_closed_at_start_mutes_before_any_frame() -> None:
    factory = MockFactory(pin_class=ClosedSwitchPin)
    posted: list[object] = []
    switch = MuteSwitch(
        MuteSettings(pin=MUTE_PIN), factory, posted.append, asyncio.get_running_loop()
    )
    try:
        assert posted == [MuteSwitched(True)]
    finally:
        switch.close()
        factory.reset()
