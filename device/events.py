"""The event vocabulary of the device, and the commands the state machine answers with.

Events are small frozen dataclasses, one per thing that happens: the button, the VAD, the
Live session and playback. Commands are what the daemon must do about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    """What the device is doing, as the person in front of it sees it."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    TOOL_PENDING = "tool-pending"
    RECONNECTING = "reconnecting"
    ERROR = "error"


class ButtonMode(StrEnum):
    """How the button takes turns."""

    PRESS = "press"  # a press opens a turn, the VAD ends it
    HOLD = "hold"  # push to talk: press starts, release ends
    ALWAYS = "always"  # open mic: the VAD starts and ends turns


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ButtonPressed:
    """The button went down."""


@dataclass(frozen=True)
class ButtonReleased:
    """The button came up (after a short press)."""


@dataclass(frozen=True)
class LongPress:
    """The button was held past the long-press time: cancel."""


@dataclass(frozen=True)
class SpeechStarted:
    """The VAD heard the user start speaking."""


@dataclass(frozen=True)
class SpeechEnded:
    """The VAD heard the user stop (after the hang-over)."""


@dataclass(frozen=True)
class Connected:
    """The Live session is connected."""


@dataclass(frozen=True)
class Reconnecting:
    """The Live session lost its connection and will retry."""

    delay_s: float
    cause: str


@dataclass(frozen=True)
class SessionFailed:
    """The Live session gave up: retrying cannot help without a change.

    ``long_press_retries``: only a long press retries (a spent budget, which a stray press
    must not override); otherwise any press does."""

    cause: str
    long_press_retries: bool = False


@dataclass(frozen=True)
class ToolCallStarted:
    """A toolCall arrived: the input gate is shut for these (id, name) calls."""

    calls: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GateOpened:
    """Every pending call was answered or cancelled."""


@dataclass(frozen=True)
class ModelAudio:
    """A piece of the model's spoken reply arrived."""


@dataclass(frozen=True)
class Interrupted:
    """The service cut the model's reply off."""


@dataclass(frozen=True)
class TurnComplete:
    """The model's turn is over (its audio may still be playing)."""


@dataclass(frozen=True)
class PlaybackIdle:
    """The speaker has played everything it was given."""


@dataclass(frozen=True)
class StreamedFrame:
    """A capture frame went to the session while a turn is open; ``in_speech`` is the VAD's
    view of it. The machine counts these for the quiet-turn timer."""

    in_speech: bool


@dataclass(frozen=True)
class MuteSwitched:
    """The mute switch was closed (``muted``) or opened."""

    muted: bool


Event = (
    ButtonPressed
    | ButtonReleased
    | LongPress
    | SpeechStarted
    | SpeechEnded
    | Connected
    | Reconnecting
    | SessionFailed
    | ToolCallStarted
    | GateOpened
    | ModelAudio
    | Interrupted
    | TurnComplete
    | PlaybackIdle
    | StreamedFrame
    | MuteSwitched
)


# -- commands ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamCapture:
    """Send capture frames to the session (``on``) or keep them local."""

    on: bool


@dataclass(frozen=True)
class PauseCapture:
    """Discard capture frames at the source (a tool call is pending) or resume."""

    paused: bool


@dataclass(frozen=True)
class SendActivity:
    """Tell the session the user started (``active``) or stopped speaking."""

    active: bool


@dataclass(frozen=True)
class FlushPlayback:
    """Drop everything queued for the speaker, now."""


@dataclass(frozen=True)
class ShowState:
    """Show ``state`` on the status LED."""

    state: State


@dataclass(frozen=True)
class ToolLed:
    """Light (or darken) the dedicated tool-pending LED."""

    on: bool


@dataclass(frozen=True)
class MuteCapture:
    """Drop every capture frame at the source, whatever the turn (``muted``), or stop."""

    muted: bool


@dataclass(frozen=True)
class RetrySession:
    """Start the Live session again after a failure."""


Command = (
    StreamCapture
    | PauseCapture
    | MuteCapture
    | SendActivity
    | FlushPlayback
    | ShowState
    | ToolLed
    | RetrySession
)
