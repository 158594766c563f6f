"""Echo handling without echo cancellation: which capture frames may be used while we speak.

Half-duplex (the default) ignores the microphone while the speaker plays and for a tail
after it stops, so the model never hears itself. Barge-in keeps listening while the speaker
plays, but under the stricter start trigger (:attr:`VadSettings.strict_start`), so only a
user talking over the model, not its echo, starts an utterance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from device.vad import FrameUse


class EchoMode(enum.Enum):
    """How the microphone is used while the speaker plays."""

    HALF_DUPLEX = "half-duplex"
    BARGE_IN = "barge-in"


@dataclass(frozen=True)
class EchoSettings:
    """``tail_ms``: how long after playback stops the room still rings (and the buffer drains)."""

    mode: EchoMode = EchoMode.HALF_DUPLEX
    tail_ms: int = 300

    def __post_init__(self) -> None:
        if self.tail_ms < 0:
            raise ValueError(f"tail_ms must be >= 0, got {self.tail_ms}")


class EchoGate:
    """Decides, once per capture frame, how the frame may be used; pure, time in frames."""

    def __init__(self, settings: EchoSettings | None = None, frame_ms: int = 20) -> None:
        self.settings = settings or EchoSettings()
        self._tail_frames = -(-self.settings.tail_ms // frame_ms)
        self._busy = (
            FrameUse.DISCARD if self.settings.mode is EchoMode.HALF_DUPLEX else FrameUse.STRICT
        )
        self._tail_left = 0

    def classify(self, playing: bool) -> FrameUse:
        """Call once per frame with whether the speaker is playing at that moment."""
        if playing:
            self._tail_left = self._tail_frames
            return self._busy
        if self._tail_left > 0:
            self._tail_left -= 1
            return self._busy
        return FrameUse.NORMAL

    def reset(self) -> None:
        """Forget a running tail (e.g. after a flush the daemon knows left no echo)."""
        self._tail_left = 0
