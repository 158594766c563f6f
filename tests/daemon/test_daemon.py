"""The whole device: real ALSA PCMs, mock pins, the stand-in, through the real SDK."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest

from device.config import Settings
from device.daemon import APPLIED_ON_RELOAD, RESTART_TO_APPLY
from device.events import State
from device.gpio import BACKGROUND_TOOL, PATTERNS
from services.tools.registry import ToolSpec
from tests.daemon.conftest import (
    BUTTON_PIN,
    LIGHT_PIN,
    TOOL_PIN,
    Rig,
    RigFactory,
)
from tests.speech_fixtures import noise

LIGHT_ON = {"name": "set_output", "args": {"name": "kitchen_light", "on": True}}
SCENARIO = {
    "turns": [
        {
            "heard": "Turn on the kitchen light.",
            "tool_calls": [LIGHT_ON],
            "reply": "Done, the light is on.",
        }
    ]
}


def assert_clean(rig: Rig) -> None:
    assert rig.emulator.trace.select("violation") == []


def tool_led_window(rig: Rig) -> tuple[float, float]:
    times = [(t, o.detail) for t, o in rig.seen if o.kind == "tool-led"]
    on = [t for t, d in times if d == "on"]
    off = [t for t, d in times if d == "off"]
    assert len(on) == 1
    assert len(off) == 1
    return on[0], off[0]


async def test_always_mode_speech_turns_on_the_light_and_answers(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    async with rig_factory(SCENARIO, mode="always") as rig:
        assert rig.pin(LIGHT_PIN).state is False or rig.pin(LIGHT_PIN).state == 0
        rig.mic.say(request_speech)
        await rig.wait_for(
            lambda: "idle" in rig.kinds("state")[1:] and bool(rig.kinds("tool-result"))
        )
        assert rig.pin(LIGHT_PIN).state == 1
        assert rig.pin(TOOL_PIN).state == 0
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"]
    states = rig.kinds("state")
    assert states[:6] == ["idle", "listening", "thinking", "tool-pending", "thinking", "speaking"]
    assert states[-1] == "idle"
    assert rig.speaker.stat().st_size > 24000  # over half a second of reply reached the speaker


async def test_tool_led_is_lit_exactly_while_the_call_is_pending(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    async def slow_light(args: dict[str, Any]) -> str:
        await asyncio.sleep(0.3)
        return "ok"

    scenario = {"turns": [{"tool_calls": [{"name": "slow_light"}], "reply": "ok"}]}
    tool = ToolSpec("slow_light", "a slow relay", slow_light)
    async with rig_factory(scenario, mode="always", extra_tools=(tool,)) as rig:
        rig.mic.say(request_speech)
        # Keep talking into the mic while the call is pending: capture must be paused.
        await rig.wait_for(lambda: rig.pin(TOOL_PIN).state == 1)
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: rig.kinds("tool-led") == ["on", "off"])
        await rig.wait_state("idle")
        assert rig.daemon.source.stats.gated > 0
    assert_clean(rig)
    on, off = tool_led_window(rig)
    trace = rig.emulator.trace
    [call] = trace.select("out", kind="toolCall")
    [response] = trace.select("in", kind="toolResponse")
    assert call["t"] <= on <= response["t"]
    assert on < off
    grace = 0.1
    realtime = [
        r
        for r in trace.select("in")
        if r["kind"] in ("audio", "activityStart", "activityEnd", "audioStreamEnd")
        and on + grace < r["t"] < off
    ]
    assert realtime == []


@pytest.mark.parametrize("mode", ["press", "hold"])
async def test_button_modes_send_exactly_one_start_and_one_end(
    rig_factory: RigFactory, request_speech: bytes, mode: str
) -> None:
    scenario = {"turns": [{"reply": "Yes?"}]}
    async with rig_factory(scenario, mode=mode) as rig:
        button = rig.pin(BUTTON_PIN)
        button.drive_low()
        if mode == "press":
            button.drive_high()
        await rig.wait_state("listening")
        rig.mic.say(request_speech)
        if mode == "hold":
            await asyncio.to_thread(rig.mic.idle.wait, 10)
            assert rig.daemon.machine.state.value == "listening"
            button.drive_high()
        await rig.wait_for(
            lambda: rig.kinds("state")[-1:] == ["idle"] and "thinking" in rig.kinds("state")
        )
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"]


async def test_long_press_flushes_playback(rig_factory: RigFactory, request_speech: bytes) -> None:
    scenario = {"turns": [{"reply": "This is a long answer that keeps going for a while. " * 3}]}
    async with rig_factory(scenario, mode="always", pace=1.0) as rig:
        rig.mic.say(request_speech)
        await rig.wait_state("speaking")
        button = rig.pin(BUTTON_PIN)
        button.drive_low()
        # The press interrupts the answer and opens a turn; holding on cancels that turn.
        await rig.wait_for(lambda: rig.kinds("state")[-2:] == ["listening", "idle"])
        button.drive_high()
        assert rig.daemon.sink.stats.flushes >= 1
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"] * 2


@pytest.mark.parametrize("failure", ["raises", "times out", "1011"])
async def test_failures_mid_call_leave_leds_right_and_the_device_usable(
    rig_factory: RigFactory, request_speech: bytes, failure: str
) -> None:
    async def flaky(args: dict[str, Any]) -> str:
        if failure == "raises":
            raise RuntimeError("relay board not answering")
        await asyncio.sleep(0.4 if failure == "1011" else 5)
        return "ok"

    turn: dict[str, Any] = {"tool_calls": [{"name": "flaky"}], "reply": "Hmm."}
    if failure == "1011":
        turn["faults"] = [{"kind": "close", "code": 1011, "at": "tool_pending", "after_ms": 100}]
    scenario = {"turns": [turn, {"reply": "Second turn works."}]}
    tool = ToolSpec("flaky", "a flaky tool", flaky, timeout_s=0.3)
    async with rig_factory(scenario, mode="always", extra_tools=(tool,)) as rig:
        rig.mic.say(request_speech)
        await rig.wait_for(
            lambda: rig.kinds("tool-led")[-1:] == ["off"] and rig.kinds("state")[-1] == "idle"
        )
        assert rig.pin(TOOL_PIN).state == 0
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: any("Second" in s for s in rig.kinds("model-said")))
        await rig.wait_state("idle")
    assert_clean(rig)
    if failure == "1011":
        assert [r.code for r in rig.daemon.session.closures] == [1011]
    else:
        results = rig.kinds("tool-result")
        assert "error" in results[0]


async def test_a_rejected_key_shows_the_error_pattern_and_a_press_retries(
    rig_factory: RigFactory,
) -> None:
    async with rig_factory(SCENARIO, api_key="wrong-key", first_state="error") as rig:
        assert "API key" in rig.daemon.status_line
        status_led = rig.daemon.indicators.status
        assert status_led is not None
        assert status_led.showing is State.ERROR
        attempts = len(rig.emulator.trace.select("close"))
        rig.pin(BUTTON_PIN).drive_low()
        rig.pin(BUTTON_PIN).drive_high()
        await rig.wait_for(lambda: rig.kinds("state")[-2:] == ["reconnecting", "error"])
        assert len(rig.emulator.trace.select("close")) > attempts
        assert rig.pin(TOOL_PIN).state == 0


async def test_a_non_blocking_call_shows_on_the_status_led_and_leaves_the_tool_led_dark(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    async def slow_search(args: dict[str, Any]) -> str:
        await asyncio.sleep(1.0)
        return "found"

    scenario = {"turns": [{"tool_calls": [LIGHT_ON, {"name": "slow_search"}], "reply": "ok"}]}
    # No behaviour given: on gemini-3.8-live both the GPIO tool and this one are non-blocking.
    tool = ToolSpec("slow_search", "a slow search", slow_search, timeout_s=5)
    async with rig_factory(
        scenario, mode="always", extra_tools=(tool,), live={"model": "gemini-3.8-live"}
    ) as rig:
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: "slow_search" in rig.kinds("tool-running")[-1:])
        status = rig.daemon.indicators.status
        assert status is not None
        assert status.pattern is BACKGROUND_TOOL
        assert rig.pin(TOOL_PIN).state == 0
        await rig.wait_for(lambda: rig.kinds("tool-running")[-1:] == [""])
        await rig.wait_state("idle")
        assert status.pattern is PATTERNS[State.IDLE]
        assert rig.pin(LIGHT_PIN).state == 1
        assert rig.daemon.source.stats.gated == 0
    assert_clean(rig)
    assert rig.kinds("tool-led") == []
    [call] = rig.emulator.trace.select("out", kind="toolCall")
    assert call["blocking"] == [False, False]


def speaking_to_idle(states: list[str]) -> int:
    return sum(1 for a, b in itertools.pairwise(states) if (a, b) == ("speaking", "idle"))


async def test_a_barge_in_reply_plays_with_one_speaking_to_idle_transition(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    scenario = {
        "turns": [
            {"reply": "This is a long answer that keeps going for a while. " * 3},
            {"reply": "Here is the second answer, in several pieces."},
        ]
    }
    async with rig_factory(scenario, mode="press", pace=1.0) as rig:
        button = rig.pin(BUTTON_PIN)
        button.drive_low()
        button.drive_high()
        rig.mic.say(request_speech)
        await rig.wait_state("speaking")
        # A press while the model speaks interrupts it and opens the next turn.
        button.drive_low()
        button.drive_high()
        await rig.wait_state("listening")
        barge_in = len(rig.kinds("state"))
        rig.mic.say(request_speech)
        await rig.wait_for(
            lambda: (
                "pieces." in "".join(rig.kinds("model-said"))
                and rig.daemon.machine.state is State.IDLE
            )
        )
    assert_clean(rig)
    assert rig.emulator.trace.select("out", kind="serverContent.interrupted") != []
    after = rig.kinds("state")[barge_in - 1 :]
    assert after[0] == "listening"
    assert "speaking" in after
    assert speaking_to_idle(after) == 1
    assert after[-1] == "idle"


async def test_room_tone_that_starts_during_a_pending_call_starts_no_turn(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    async def slow_light(args: dict[str, Any]) -> str:
        await asyncio.sleep(3.5)
        return "ok"

    # No spoken reply: nothing plays, so the VAD hears the room as soon as the gate opens.
    scenario = {"turns": [{"tool_calls": [{"name": "slow_light"}], "reply": ""}]}
    tool = ToolSpec("slow_light", "a slow relay", slow_light, timeout_s=10)
    room_tone = noise(6.0, 1000.0, brown=True, seed=7).pcm
    async with rig_factory(scenario, mode="always", extra_tools=(tool,)) as rig:
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: rig.pin(TOOL_PIN).state == 1)
        rig.mic.say(room_tone)
        await rig.wait_for(lambda: rig.kinds("tool-led") == ["on", "off"])
        await asyncio.to_thread(rig.mic.idle.wait, 15)
        await rig.wait_state("idle")
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"]


async def test_after_a_mid_utterance_call_the_turn_ends_once_the_vad_hears_silence(
    rig_factory: RigFactory, request_speech: bytes
) -> None:
    async def slow_light(args: dict[str, Any]) -> str:
        await asyncio.sleep(2.5)
        return "ok"

    # The call comes while the user speaks and is answered after they stopped.
    turn = {"tool_calls": [{"name": "slow_light"}], "during_speech_ms": 300, "reply": "Done."}
    tool = ToolSpec("slow_light", "a slow relay", slow_light, timeout_s=10)
    async with rig_factory({"turns": [turn]}, mode="always", extra_tools=(tool,)) as rig:
        rig.mic.say(request_speech)
        await rig.wait_for(lambda: rig.kinds("tool-led") == ["on", "off"])
        await rig.wait_for(lambda: "Done." in "".join(rig.kinds("model-said")))
    assert_clean(rig)
    assert rig.signals() == ["activityStart", "activityEnd"]
    trace = rig.emulator.trace
    [response] = trace.select("in", kind="toolResponse")
    [end] = trace.select("in", kind="activityEnd")
    after_gate = [r for r in trace.select("in", kind="audio") if response["t"] < r["t"] < end["t"]]
    # The VAD restarts when the gate opens: its hang-over of silence (400 ms, 20 frames) ends
    # the turn, with a few frames for the hand-over to the session.
    assert len(after_gate) <= 20 + 5


def test_a_reload_applies_or_reports_every_setting() -> None:
    names = {f.name for f in dataclasses.fields(Settings)} - {"path"}
    assert set(APPLIED_ON_RELOAD).isdisjoint(RESTART_TO_APPLY)
    assert names == set(APPLIED_ON_RELOAD) | set(RESTART_TO_APPLY)
