"""Every transition of the device state machine, with no I/O."""

from __future__ import annotations

import pytest

from device.events import (
    ButtonMode,
    ButtonPressed,
    ButtonReleased,
    Command,
    Connected,
    Event,
    FlushPlayback,
    GateOpened,
    Interrupted,
    LongPress,
    ModelAudio,
    MuteCapture,
    MuteSwitched,
    PauseCapture,
    PlaybackIdle,
    Reconnecting,
    RetrySession,
    SendActivity,
    SessionFailed,
    ShowState,
    SpeechEnded,
    SpeechStarted,
    State,
    StreamCapture,
    StreamedFrame,
    ToolCallStarted,
    ToolLed,
    TurnComplete,
)
from device.state import NO_SPEECH_S, DeviceStateMachine

CALL = ToolCallStarted((("function-call-1", "set_output"),))


def machine(mode: ButtonMode, *events: Event) -> DeviceStateMachine:
    m = DeviceStateMachine(mode)
    for event in (Connected(), *events):
        m.handle(event)
    return m


def run(m: DeviceStateMachine, *events: Event) -> list[Command]:
    commands: list[Command] = []
    for event in events:
        commands += m.handle(event).commands
    return commands


def activity(commands: list[Command]) -> list[bool]:
    return [c.active for c in commands if isinstance(c, SendActivity)]


def test_starts_connecting_and_idles_once_connected() -> None:
    m = DeviceStateMachine(ButtonMode.PRESS)
    assert m.state is State.RECONNECTING
    assert m.handle(Connected()).commands == (ShowState(State.IDLE),)


@pytest.mark.parametrize(
    ("mode", "events", "signals"),
    [
        (
            ButtonMode.PRESS,
            [ButtonPressed(), ButtonReleased(), SpeechStarted(), SpeechEnded()],
            [True, False],
        ),
        (
            ButtonMode.HOLD,
            [ButtonPressed(), SpeechStarted(), SpeechEnded(), ButtonReleased()],
            [True, False],
        ),
        (ButtonMode.ALWAYS, [SpeechStarted(), SpeechEnded()], [True, False]),
    ],
)
def test_each_button_mode_sends_one_start_and_one_end(
    mode: ButtonMode, events: list[Event], signals: list[bool]
) -> None:
    m = machine(mode)
    commands = run(m, *events)
    assert activity(commands) == signals
    assert m.state is State.THINKING
    assert StreamCapture(False) in commands


def test_press_mode_ignores_speech_while_idle() -> None:
    m = machine(ButtonMode.PRESS)
    transition = m.handle(SpeechStarted())
    assert not transition.handled
    assert transition.commands == ()
    assert m.state is State.IDLE


def test_a_reply_speaks_then_idles_when_playback_drains() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), SpeechEnded())
    assert run(m, ModelAudio()) == [ShowState(State.SPEAKING)]
    assert run(m, TurnComplete()) == []
    assert m.state is State.SPEAKING
    assert run(m, PlaybackIdle()) == [ShowState(State.IDLE)]


def test_a_turn_without_audio_idles_at_turn_complete() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded())
    assert run(m, TurnComplete()) == [ShowState(State.IDLE)]


def test_tool_call_lights_the_led_pauses_capture_and_resumes_where_it_was() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded())
    assert run(m, CALL) == [ToolLed(True), PauseCapture(True), ShowState(State.TOOL_PENDING)]
    assert run(m, GateOpened()) == [ToolLed(False), PauseCapture(False), ShowState(State.THINKING)]


def test_hold_release_during_a_pending_call_is_handed_to_the_session_gate() -> None:
    m = machine(ButtonMode.HOLD, ButtonPressed())
    run(m, CALL)
    commands = run(m, ButtonReleased())
    assert activity(commands) == [False]
    assert m.state is State.TOOL_PENDING
    assert run(m, GateOpened())[-1] == ShowState(State.THINKING)


def test_speech_events_are_frozen_while_a_call_is_pending() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted())
    run(m, CALL)
    for event in (SpeechStarted(), SpeechEnded(), ButtonPressed(), LongPress()):
        transition = m.handle(event)
        assert not transition.handled
        assert transition.commands == ()
    assert m.state is State.TOOL_PENDING


def test_turn_complete_during_the_gate_returns_to_idle() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded(), CALL)
    run(m, TurnComplete())
    assert run(m, GateOpened())[-1] == ShowState(State.IDLE)


def test_long_press_cancels_flushes_and_discards_the_rest_of_the_reply() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded(), ModelAudio())
    commands = run(m, LongPress())
    assert FlushPlayback() in commands
    assert m.state is State.IDLE
    assert not m.accepting_audio
    assert run(m, ModelAudio()) == []
    run(m, TurnComplete())
    assert m.accepting_audio


def test_long_press_while_listening_closes_the_turn() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed())
    commands = run(m, LongPress())
    assert activity(commands) == [False]
    assert m.state is State.IDLE


def test_in_hold_mode_a_long_hold_is_talking_and_the_release_ends_the_turn() -> None:
    m = machine(ButtonMode.HOLD, ButtonPressed())
    assert not m.handle(LongPress()).handled
    assert m.state is State.LISTENING
    commands = run(m, ButtonReleased())
    assert activity(commands) == [False]
    assert commands[-1] == ShowState(State.THINKING)


def test_interrupted_flushes_playback() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), SpeechEnded(), ModelAudio())
    assert run(m, Interrupted()) == [FlushPlayback()]


def test_barge_in_while_speaking_flushes_and_opens_a_turn() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), SpeechEnded(), ModelAudio())
    commands = run(m, SpeechStarted())
    assert commands[0] == FlushPlayback()
    assert activity(commands) == [True]
    assert m.state is State.LISTENING


def test_the_old_turns_end_after_a_barge_in_closes_only_the_old_turn() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), SpeechEnded(), ModelAudio())
    run(m, SpeechStarted(), SpeechEnded())
    # The service ends the turn that was cut off, then answers the new one in chunks, each
    # played out before the next arrives.
    run(m, Interrupted(), TurnComplete())
    states = []
    for _ in range(5):
        run(m, ModelAudio(), PlaybackIdle())
        states.append(m.state)
    assert states == [State.SPEAKING] * 5
    run(m, TurnComplete())
    assert m.state is State.IDLE


def test_a_barge_in_after_the_model_finished_waits_for_no_old_turn_complete() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), SpeechEnded(), ModelAudio(), TurnComplete())
    run(m, SpeechStarted(), SpeechEnded(), ModelAudio(), TurnComplete(), PlaybackIdle())
    assert m.state is State.IDLE


def test_a_reconnect_forgets_the_turns_a_barge_in_cut_off() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), SpeechEnded(), ModelAudio())
    run(m, SpeechStarted(), SpeechEnded(), Reconnecting(0.1, "1011"), Connected())
    run(m, ModelAudio(), TurnComplete(), PlaybackIdle())
    assert m.state is State.IDLE


def test_button_press_while_speaking_interrupts_in_every_mode() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded(), ModelAudio())
    commands = run(m, ButtonPressed())
    assert commands[0] == FlushPlayback()
    assert m.state is State.LISTENING


def test_reconnecting_darkens_the_tool_led_and_recovers() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded(), CALL)
    commands = run(m, Reconnecting(0.5, "1011"))
    assert ToolLed(False) in commands
    assert PauseCapture(False) in commands
    assert m.state is State.RECONNECTING
    assert run(m, Connected()) == [ShowState(State.IDLE)]


def test_a_failed_session_shows_error_and_a_press_retries() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed())
    commands = run(m, SessionFailed("bad key"))
    assert m.state is State.ERROR
    assert StreamCapture(False) in commands
    assert run(m, ButtonPressed()) == [RetrySession(), ShowState(State.RECONNECTING)]


@pytest.mark.parametrize("mode", list(ButtonMode))
def test_a_spent_budget_takes_a_long_press_to_override(mode: ButtonMode) -> None:
    m = machine(mode)
    run(m, SessionFailed("today's budget is spent", long_press_retries=True))
    assert m.state is State.ERROR
    assert run(m, ButtonPressed(), ButtonReleased()) == []
    assert m.state is State.ERROR
    assert run(m, ButtonPressed(), LongPress()) == [RetrySession(), ShowState(State.RECONNECTING)]
    # The next failure of the ordinary kind takes a press again.
    run(m, SessionFailed("bad key"))
    assert run(m, ButtonPressed()) == [RetrySession(), ShowState(State.RECONNECTING)]


@pytest.mark.parametrize("mode", list(ButtonMode))
def test_muting_mid_turn_ends_it_and_no_turn_opens_while_muted(mode: ButtonMode) -> None:
    m = machine(mode, ButtonPressed() if mode is not ButtonMode.ALWAYS else SpeechStarted())
    assert m.streaming
    commands = run(m, MuteSwitched(True))
    assert commands == [
        MuteCapture(True),
        SendActivity(False),
        StreamCapture(False),
        ShowState(State.THINKING),
    ]
    assert m.muted
    # What was said before muting is answered, as any turn.
    assert run(m, ModelAudio()) == [ShowState(State.SPEAKING)]
    assert m.accepting_audio
    run(m, TurnComplete(), PlaybackIdle())
    assert m.state is State.IDLE
    # Neither the button nor the VAD opens a turn while muted.
    assert run(m, ButtonPressed(), ButtonReleased(), SpeechStarted()) == []
    assert m.state is State.IDLE
    assert run(m, MuteSwitched(True)) == []  # a bounce repeats nothing
    assert run(m, MuteSwitched(False)) == [MuteCapture(False)]
    commands = run(m, ButtonPressed() if mode is not ButtonMode.ALWAYS else SpeechStarted())
    assert activity(commands) == [True]


def test_muting_while_a_call_is_pending_ends_the_turn_once_the_gate_opens() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), CALL)
    assert m.state is State.TOOL_PENDING
    commands = run(m, MuteSwitched(True))
    # The activityEnd is queued behind the gate (the session holds it), never sent early.
    assert commands == [MuteCapture(True), SendActivity(False), StreamCapture(False)]
    assert ShowState(State.THINKING) in run(m, GateOpened())
    assert m.muted


def test_muting_while_reconnecting_mid_turn_reconnects_to_idle() -> None:
    m = machine(ButtonMode.ALWAYS, SpeechStarted(), Reconnecting(0.1, "1011"))
    assert m.state is State.RECONNECTING
    assert run(m, MuteSwitched(True)) == [
        MuteCapture(True),
        SendActivity(False),
        StreamCapture(False),
    ]
    assert run(m, Connected()) == [ShowState(State.IDLE)]


def test_a_muted_device_still_plays_the_reply_in_progress() -> None:
    m = machine(ButtonMode.PRESS, ButtonPressed(), SpeechEnded(), ModelAudio())
    assert m.state is State.SPEAKING
    assert run(m, MuteSwitched(True)) == [MuteCapture(True)]
    assert m.state is State.SPEAKING
    assert m.accepting_audio


@pytest.mark.parametrize("state_events", [[], [ButtonPressed()], [ButtonPressed(), SpeechEnded()]])
def test_unexpected_events_never_raise(state_events: list[Event]) -> None:
    everything: list[Event] = [
        ButtonPressed(),
        ButtonReleased(),
        LongPress(),
        SpeechStarted(),
        SpeechEnded(),
        ModelAudio(),
        Interrupted(),
        TurnComplete(),
        PlaybackIdle(),
        GateOpened(),
        MuteSwitched(True),
        MuteSwitched(False),
    ]
    for mode in ButtonMode:
        for event in everything:
            m = machine(mode, *state_events)
            transition = m.handle(event)
            assert transition.state is m.state


def test_the_quiet_turn_timer_closes_a_turn_nobody_spoke_in() -> None:
    m = DeviceStateMachine(ButtonMode.PRESS, frame_ms=20, hangover_ms=500)
    run(m, Connected(), ButtonPressed())
    limit = int(NO_SPEECH_S * 1000 / 20)
    assert run(m, *[StreamedFrame(in_speech=False)] * (limit - 1)) == []
    # Speech restarts the count.
    run(m, StreamedFrame(in_speech=True), *[StreamedFrame(in_speech=False)] * (limit - 1))
    assert m.state is State.LISTENING
    assert run(m, StreamedFrame(in_speech=False)) == [
        SendActivity(False),
        StreamCapture(False),
        ShowState(State.THINKING),
    ]


def test_after_a_tool_call_the_turn_closes_after_one_hangover() -> None:
    m = DeviceStateMachine(ButtonMode.PRESS, frame_ms=20, hangover_ms=500)
    run(m, Connected(), ButtonPressed(), ToolCallStarted((("1", "set_output"),)), GateOpened())
    assert run(m, *[StreamedFrame(in_speech=False)] * 24) == []
    assert SendActivity(False) in run(m, StreamedFrame(in_speech=False))


def test_hold_mode_has_no_quiet_timer() -> None:
    m = DeviceStateMachine(ButtonMode.HOLD)
    run(m, Connected(), ButtonPressed())
    assert run(m, *[StreamedFrame(in_speech=False)] * 1000) == []
    assert m.state is State.LISTENING
