"""The device's state machine: (state, event) → (new state, commands). Pure: no I/O, no clock.

The daemon feeds it every event and carries out the commands it returns. An event that means
nothing in the current state is answered with ``handled=False`` and no commands; the daemon
logs it and carries on.
"""

from __future__ import annotations

from dataclasses import dataclass

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

# How long a turn the button opened waits for speech before the turn is closed.
NO_SPEECH_S = 5.0


@dataclass(frozen=True)
class Transition:
    """The outcome of one event."""

    state: State
    commands: tuple[Command, ...] = ()
    handled: bool = True


class DeviceStateMachine:
    """Turn taking, the tool-pending state and connection states of the device."""

    def __init__(self, mode: ButtonMode, *, frame_ms: int = 20, hangover_ms: int = 500) -> None:
        self.mode = mode
        self.frame_ms = frame_ms
        # The VAD's hangover: a reload may change it; the next timer armed takes the new one.
        self.hangover_ms = hangover_ms
        self.state = State.RECONNECTING
        self._resume_to = State.IDLE
        # The user's turn is open on the session (SendActivity(True) without its False).
        self._turn_open = False
        self._model_done = True
        self._playing = False
        self._discard_reply = False
        # Turns carry an identity: each user turn opened gets the next number, and the model's
        # turn answering it ends with that turn's turnComplete. A barge-in opens a new turn
        # while the model's old one is still open on the wire; these are the old ones, oldest
        # first, whose interrupted and turnComplete are still to come and close only them.
        self._turn = 0
        self._superseded: list[int] = []
        # The quiet-turn timer, in streamed frames: a turn in which the VAD hears nothing for
        # this long is closed. 0 is disarmed.
        self._quiet_frames = 0
        self._quiet_limit = 0
        # In ERROR: a press does not retry, a long press does (SessionFailed.long_press_retries).
        self._long_press_retries = False
        # The mute switch: an overlay on every state, not a state. Nothing is captured, no
        # turn opens; the model may still finish speaking.
        self._muted = False

    @property
    def accepting_audio(self) -> bool:
        """Should model audio go to the speaker? Not after the user cancelled the reply."""
        return not self._discard_reply and self.state not in (State.ERROR, State.RECONNECTING)

    @property
    def muted(self) -> bool:
        """Is the microphone muted by its switch?"""
        return self._muted

    @property
    def playing(self) -> bool:
        """Does the machine believe the speaker is still playing the model's audio?"""
        return self._playing

    @property
    def streaming(self) -> bool:
        """Should capture frames be sent to the session now?"""
        return self._turn_open

    # -- helpers -----------------------------------------------------------------------------
    def _go(self, state: State, *commands: Command) -> Transition:
        changed = state != self.state
        self.state = state
        shown = (ShowState(state),) if changed else ()
        return Transition(state, (*commands, *shown))

    def _arm_quiet(self, seconds: float) -> None:
        self._quiet_frames = 0
        self._quiet_limit = max(1, int(1000 * seconds / self.frame_ms))

    def _resume_capture(self) -> PauseCapture:
        # The VAD restarts from a clean slate: a turn the call cut into ends after the same
        # silence as any other, not a longer grace.
        self._arm_quiet(self.hangover_ms / 1000)
        return PauseCapture(False)

    def _stay(self, *commands: Command) -> Transition:
        return Transition(self.state, commands)

    def _ignore(self) -> Transition:
        return Transition(self.state, (), handled=False)

    def _open_turn(self, *first: Command) -> Transition:
        if not self._model_done and self.state is State.SPEAKING:
            self._superseded.append(self._turn)
        self._turn += 1
        self._turn_open = True
        self._discard_reply = False
        self._model_done = False
        if self.mode is not ButtonMode.HOLD:
            # A turn the button opened ends when the VAD hears its end, or the silence.
            self._arm_quiet(NO_SPEECH_S)
        return self._go(State.LISTENING, *first, SendActivity(True), StreamCapture(True))

    def _close_turn(self) -> Transition:
        self._turn_open = False
        return self._go(State.THINKING, SendActivity(False), StreamCapture(False))

    def _after_reply(self) -> Transition:
        if self._model_done and not self._playing:
            self._discard_reply = False
            return self._go(State.IDLE)
        return self._stay()

    # -- the machine -------------------------------------------------------------------------
    def handle(self, event: Event) -> Transition:
        """Advance on ``event``."""
        match event:
            case Connected():
                return self._connected()
            case Reconnecting():
                # A new connection sends nothing more for the turns the old one cut off.
                self._superseded.clear()
                return self._go(State.RECONNECTING, ToolLed(False), self._resume_capture())
            case SessionFailed(_, long_press_retries):
                self._superseded.clear()
                self._turn_open = False
                self._long_press_retries = long_press_retries
                return self._go(
                    State.ERROR,
                    ToolLed(False),
                    self._resume_capture(),
                    StreamCapture(False),
                    FlushPlayback(),
                )
            case ToolCallStarted():
                return self._tool_call()
            case GateOpened():
                return self._gate_opened()
            case StreamedFrame(in_speech):
                return self._streamed(in_speech)
            case MuteSwitched(muted):
                return self._mute(muted)
        if self.state is State.TOOL_PENDING:
            return self._while_pending(event)
        match event:
            case ButtonPressed():
                return self._pressed()
            case ButtonReleased():
                if self.mode is ButtonMode.HOLD and self.state is State.LISTENING:
                    return self._close_turn()
                return self._stay()
            case LongPress():
                if self.state is State.ERROR and self._long_press_retries:
                    return self._go(State.RECONNECTING, RetrySession())
                if self.mode is ButtonMode.HOLD:
                    # Holding is how a hold-mode user talks; pressing is their interrupt.
                    return self._ignore()
                return self._cancel()
            case SpeechStarted():
                return self._speech_started()
            case SpeechEnded():
                if self.state is State.LISTENING and self.mode is not ButtonMode.HOLD:
                    return self._close_turn()
                return self._ignore() if self.state is not State.LISTENING else self._stay()
            case ModelAudio():
                return self._model_audio()
            case Interrupted():
                # Before the new reply on the wire: whatever plays now is the old turn's.
                self._playing = False
                return self._stay(FlushPlayback())
            case TurnComplete():
                if self._superseded:
                    self._superseded.pop(0)
                    return self._stay()
                return self._turn_complete()
            case PlaybackIdle():
                self._playing = False
                if self.state is State.SPEAKING:
                    return self._after_reply()
                return self._stay()
        return self._ignore()

    def _connected(self) -> Transition:
        if self.state is State.TOOL_PENDING:
            return self._stay()
        if self._turn_open:
            return self._go(State.LISTENING)
        return self._go(State.IDLE)

    def _streamed(self, in_speech: bool) -> Transition:
        """Count a quiet frame of an open turn; close the turn once the timer runs out."""
        if self.mode is ButtonMode.HOLD or in_speech:
            self._quiet_frames = 0
            return self._stay()
        self._quiet_frames += 1
        if self._quiet_limit and self._quiet_frames >= self._quiet_limit:
            return self.handle(SpeechEnded())
        return self._stay()

    def _tool_call(self) -> Transition:
        if self.state is not State.TOOL_PENDING:
            self._resume_to = self.state
        return self._go(State.TOOL_PENDING, ToolLed(True), PauseCapture(True))

    def _gate_opened(self) -> Transition:
        if self.state is not State.TOOL_PENDING:
            return self._stay(ToolLed(False), self._resume_capture())
        back = self._resume_to
        if back is State.LISTENING and not self._turn_open:
            back = State.THINKING
        if back is State.SPEAKING and self._model_done and not self._playing:
            back = State.IDLE
        return self._go(back, ToolLed(False), self._resume_capture())

    def _while_pending(self, event: Event) -> Transition:
        """Capture is paused; only the user's own intent and the model's turn move on."""
        match event:
            case ButtonReleased() if self.mode is ButtonMode.HOLD and self._turn_open:
                # The session's gate holds the activityEnd back and sends it once open.
                self._turn_open = False
                self._resume_to = State.THINKING
                return self._stay(SendActivity(False), StreamCapture(False))
            case ModelAudio():
                self._playing = True
                return self._stay()
            case TurnComplete():
                self._model_done = True
                self._resume_to = State.IDLE if not self._playing else State.SPEAKING
                return self._stay()
            case PlaybackIdle():
                self._playing = False
                return self._stay()
            case Interrupted():
                self._playing = False
                return self._stay(FlushPlayback())
        return self._ignore()

    def _mute(self, muted: bool) -> Transition:
        if muted == self._muted:
            return self._stay()
        self._muted = muted
        if not muted:
            return self._stay(MuteCapture(False))
        commands: list[Command] = [MuteCapture(True)]
        if not self._turn_open:
            return self._stay(*commands)
        # The turn ends where the user muted it. The model has heard what came before and
        # answers it as usual: dropping the answer while its tool calls still act would hide
        # what the device did.
        self._turn_open = False
        commands += [SendActivity(False), StreamCapture(False)]
        if self.state is State.TOOL_PENDING:
            # The session's gate holds the activityEnd back and sends it once open.
            self._resume_to = State.THINKING
            return self._stay(*commands)
        if self.state is not State.LISTENING:
            return self._stay(*commands)  # reconnecting: the new connection has no turn open
        return self._go(State.THINKING, *commands)

    def _pressed(self) -> Transition:
        if self._muted and self.state is not State.ERROR:
            return self._ignore()
        match self.state:
            case State.ERROR:
                if self._long_press_retries:
                    return self._ignore()
                return self._go(State.RECONNECTING, RetrySession())
            case State.RECONNECTING:
                return self._ignore()
            case State.LISTENING:
                return self._stay()
            case State.SPEAKING:
                self._playing = False
                return self._open_turn(FlushPlayback())
        return self._open_turn()

    def _cancel(self) -> Transition:
        if self.state in (State.ERROR, State.RECONNECTING):
            return self._ignore()
        commands: list[Command] = [FlushPlayback()]
        if self._turn_open:
            self._turn_open = False
            commands += [SendActivity(False), StreamCapture(False)]
        self._playing = False
        self._discard_reply = not self._model_done
        return self._go(State.IDLE, *commands)

    def _speech_started(self) -> Transition:
        if self._muted:
            return self._ignore()
        if self.mode is not ButtonMode.ALWAYS:
            return self._stay() if self.state is State.LISTENING else self._ignore()
        match self.state:
            case State.IDLE | State.THINKING:
                return self._open_turn()
            case State.SPEAKING:
                # Only a barge-in reaches here: half-duplex capture ignores the speaker's echo.
                self._playing = False
                return self._open_turn(FlushPlayback())
            case State.LISTENING:
                return self._stay()
        return self._ignore()

    def _model_audio(self) -> Transition:
        if self._discard_reply:
            return self._stay()
        self._playing = True
        if self.state in (State.THINKING, State.IDLE):
            return self._go(State.SPEAKING)
        return self._stay()

    def _turn_complete(self) -> Transition:
        self._model_done = True
        if self.state in (State.THINKING, State.SPEAKING) or self._discard_reply:
            return self._after_reply()
        return self._stay()
