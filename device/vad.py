"""Speech endpointing with webrtcvad: frames in, events out; pure, time counted in frames.

An utterance goes through three states:

* idle: each frame is classified; once ``voiced_frames`` of the last ``window_frames`` are
  voiced, the first voiced frame of that window is the *onset* and a candidate begins;
* candidate: it becomes speech (:class:`SpeechStarted`) once its voiced span reaches
  ``min_utterance_ms``; if ``hangover_ms`` of silence comes first it was a blip and is
  reported as :class:`SpeechDiscarded` (nothing was started, so there is nothing to undo);
* speech: every frame comes back as :class:`SpeechAudio` until ``hangover_ms`` of silence
  (:class:`SpeechEnded` with ``SILENCE``) or ``max_utterance_ms`` (``MAX_LENGTH``).

:class:`SpeechStarted` carries ``preroll_ms`` of audio before the onset plus every frame
from the onset to the confirming frame, so the first syllable reaches the model after its
activity start. The frame that carries a :class:`SpeechEnded` is not part of the utterance.

webrtcvad alone takes any loud steady noise (a fan, a hood, traffic) for speech. A frame
therefore counts as voiced only if webrtcvad says so *and* it is ``noise_margin_db`` above the
room's noise floor, a low percentile of the last ``noise_window_ms`` (:class:`NoiseFloor`).
The floor keeps learning while the endpointer is frozen (a tool call is pending), so that room
tone which began meanwhile is already the floor when it resumes, not a voice.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from device.audio import INPUT_RATE, VAD_FRAME_MS
from device.frames import frame_bytes


class FrameUse(enum.Enum):
    """How a capture frame may be used (see :class:`device.echo.EchoGate`)."""

    NORMAL = "normal"
    STRICT = "strict"  # the speaker is playing and barge-in is on: the strict trigger applies
    DISCARD = "discard"  # the frame may hold the speaker's echo: ignore it


class EndReason(enum.Enum):
    """Why an utterance ended."""

    SILENCE = "silence"
    MAX_LENGTH = "max_length"
    FROZEN = "frozen"


@dataclass(frozen=True)
class StartTrigger:
    """Speech starts when ``voiced_frames`` of the last ``window_frames`` are voiced at
    webrtcvad ``aggressiveness`` (0 lenient … 3 strict)."""

    voiced_frames: int = 4
    window_frames: int = 6
    aggressiveness: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if not 1 <= self.voiced_frames <= self.window_frames:
            raise ValueError("need 1 <= voiced_frames <= window_frames")


@dataclass(frozen=True)
class VadSettings:
    """Endpointing settings; ``start.aggressiveness`` also classifies frames within speech."""

    frame_ms: int = 20
    start: StartTrigger = field(default_factory=StartTrigger)
    strict_start: StartTrigger = field(
        default_factory=lambda: StartTrigger(voiced_frames=10, window_frames=12, aggressiveness=3)
    )
    preroll_ms: int = 300
    hangover_ms: int = 500
    min_utterance_ms: int = 200
    max_utterance_ms: int = 15_000
    noise_margin_db: float = 6.0  # 0 turns the noise floor off
    noise_window_ms: int = 3_000

    def __post_init__(self) -> None:
        if self.frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS}, got {self.frame_ms}")
        if self.preroll_ms < 0 or self.min_utterance_ms < 0:
            raise ValueError("preroll_ms and min_utterance_ms must be >= 0")
        if self.hangover_ms < self.frame_ms:
            raise ValueError("hangover_ms must be at least one frame")
        if self.max_utterance_ms <= self.min_utterance_ms:
            raise ValueError("max_utterance_ms must exceed min_utterance_ms")
        if self.noise_margin_db < 0 or self.noise_window_ms < self.frame_ms:
            raise ValueError("noise_margin_db must be >= 0 and noise_window_ms at least one frame")

    def frames(self, ms: int) -> int:
        """``ms`` as a whole number of frames, rounded up."""
        return -(-ms // self.frame_ms)


@dataclass(frozen=True)
class SpeechStarted:
    """An utterance was confirmed at ``at_frame``; its speech began at ``onset_frame``."""

    preroll: tuple[bytes, ...]
    at_frame: int
    onset_frame: int
    strict: bool  # confirmed under the barge-in trigger (the speaker was playing)


@dataclass(frozen=True)
class SpeechAudio:
    """A frame within an utterance, after the ones :class:`SpeechStarted` carried."""

    frame: bytes
    at_frame: int


@dataclass(frozen=True)
class SpeechEnded:
    """The utterance ended at ``at_frame``.

    ``end_frame`` is one past its last voiced frame (for ``MAX_LENGTH``: where it was cut), so
    for ``SILENCE`` it equals ``at_frame - hangover_frames + 1``.
    """

    at_frame: int
    reason: EndReason
    end_frame: int


@dataclass(frozen=True)
class SpeechDiscarded:
    """A candidate shorter than ``min_utterance_ms`` ended; no SpeechStarted was sent for it."""

    at_frame: int
    onset_frame: int
    length_frames: int


VadEvent = SpeechStarted | SpeechAudio | SpeechEnded | SpeechDiscarded
VoiceClassifier = Callable[[bytes, bool], bool]  # (frame, strict) -> voiced


class WebrtcClassifier:
    """webrtcvad at the normal and the strict aggressiveness."""

    def __init__(self, settings: VadSettings) -> None:
        self._normal = webrtcvad.Vad(settings.start.aggressiveness)
        self._strict = webrtcvad.Vad(settings.strict_start.aggressiveness)

    def __call__(self, frame: bytes, strict: bool) -> bool:
        vad = self._strict if strict else self._normal
        return bool(vad.is_speech(frame, INPUT_RATE))


def level_db(frame: bytes) -> float:
    """The frame's power in dB relative to one LSB² (digital silence is 0 dB)."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.int64)
    return 10 * math.log10(int(np.dot(samples, samples)) / max(1, len(samples)) + 1.0)


class NoiseFloor:
    """The room's steady noise level: a low percentile of the frame levels of a sliding window.

    The floor follows the room down at once and up only when the quiet frames have left the
    window, so speech (which always pauses) does not lift it, while a fan that keeps running
    becomes the new floor within one window. A percentile rather than the minimum, because
    the level of rumbling noise swings from frame to frame and its quietest frame would set
    the floor far below its typical level. The window is also kept sorted, so the percentile
    costs a bisection per frame rather than a sort (this runs 50 times a second).
    """

    PERCENTILE = 10.0

    def __init__(self, window_frames: int, margin_db: float) -> None:
        self._levels: deque[float] = deque(maxlen=window_frames)
        self._sorted: list[float] = []
        self._margin_db = margin_db

    @property
    def floor_db(self) -> float | None:
        """The current floor; None before the first frame."""
        return self._floor() if self._sorted else None

    def _floor(self) -> float:
        # Linear between the two nearest ranks, as numpy.percentile has it.
        position = self.PERCENTILE / 100 * (len(self._sorted) - 1)
        low = int(position)
        high = min(low + 1, len(self._sorted) - 1)
        return self._sorted[low] + (self._sorted[high] - self._sorted[low]) * (position - low)

    def learn(self, level: float) -> None:
        """Take a frame's level (:func:`level_db`) into the window without judging it."""
        if len(self._levels) == self._levels.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._levels[0])]
        self._levels.append(level)
        bisect.insort(self._sorted, level)

    def above(self, frame: bytes) -> bool:
        """Take ``frame`` into the window; True if it stands ``margin_db`` above the floor."""
        level = level_db(frame)
        self.learn(level)
        return level >= self._floor() + self._margin_db


class _State(enum.Enum):
    IDLE = "idle"
    CANDIDATE = "candidate"
    SPEECH = "speech"


class Endpointer:
    """Turns 16 kHz mono s16le frames into utterance events (see the module docstring)."""

    def __init__(
        self, settings: VadSettings | None = None, classifier: VoiceClassifier | None = None
    ) -> None:
        self.settings = settings or VadSettings()
        self._classify = classifier or WebrtcClassifier(self.settings)
        s = self.settings
        self._floor = (
            NoiseFloor(s.frames(s.noise_window_ms), s.noise_margin_db)
            if s.noise_margin_db > 0
            else None
        )
        self._frame_bytes = frame_bytes(s.frame_ms, INPUT_RATE)
        self._preroll = s.frames(s.preroll_ms)
        self._hangover = s.frames(s.hangover_ms)
        self._min = s.frames(s.min_utterance_ms)
        self._max = s.frames(s.max_utterance_ms)
        window = max(s.start.window_frames, s.strict_start.window_frames)
        self._window: deque[bool] = deque(maxlen=window)
        self._history: deque[bytes] = deque(maxlen=self._preroll + window)
        self._pending: list[bytes] = []
        self._state = _State.IDLE
        self._window_strict = False
        self._started_strict = False
        self._onset = 0
        self._last_voiced = 0
        self._frozen = False
        self._frames_seen = 0

    @property
    def hangover_frames(self) -> int:
        """Silent frames after the last voiced one before an utterance ends."""
        return self._hangover

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and SpeechEnded."""
        return self._state is _State.SPEECH

    @property
    def frozen(self) -> bool:
        """True between freeze() and resume()."""
        return self._frozen

    @property
    def frames_seen(self) -> int:
        """Frames passed to process() since the start or the last reset()."""
        return self._frames_seen

    def process(self, frame: bytes, use: FrameUse = FrameUse.NORMAL) -> VadEvent | None:
        """Classify one frame; returns the event it causes, if any."""
        if len(frame) != self._frame_bytes:
            raise ValueError(f"expected a {self._frame_bytes}-byte frame, got {len(frame)}")
        index = self._frames_seen
        self._frames_seen += 1
        if self._frozen:
            if self._floor is not None and use is not FrameUse.DISCARD:
                self._floor.learn(level_db(frame))
            return None
        if use is FrameUse.DISCARD:
            return self._discard(index)
        strict = use is FrameUse.STRICT
        loud = self._floor is None or self._floor.above(frame)
        voiced = self._classify(frame, strict and self._state is not _State.SPEECH) and loud
        self._history.append(frame)
        if self._state is _State.IDLE:
            return self._idle(index, voiced, strict)
        if self._state is _State.CANDIDATE:
            self._pending.append(frame)
            return self._candidate(index, voiced)
        return self._speech(index, frame, voiced)

    def learn_noise(self, levels: Iterable[float]) -> None:
        """Levels (:func:`level_db`) of frames the source discarded while frozen, oldest
        first: they judge nothing, but tell the noise floor what the room sounds like now."""
        if self._floor is not None:
            for level in levels:
                self._floor.learn(level)

    def freeze(self) -> SpeechEnded | None:
        """Stop processing (frames are still counted); ends an utterance in progress."""
        if self._frozen:
            return None
        self._frozen = True
        ended = None
        if self._state is _State.SPEECH:
            ended = SpeechEnded(
                at_frame=max(0, self._frames_seen - 1),
                reason=EndReason.FROZEN,
                end_frame=self._last_voiced + 1,
            )
        self._clear()
        return ended

    def resume(self) -> None:
        """Process again from a clean slate: no window, pre-roll or candidate carried over."""
        self._frozen = False
        self._clear()

    def reset(self) -> None:
        """Back to the initial state, frame count included."""
        self.resume()
        self._frames_seen = 0

    def _clear(self) -> None:
        self._state = _State.IDLE
        self._window.clear()
        self._history.clear()
        self._pending = []

    def _idle(self, index: int, voiced: bool, strict: bool) -> VadEvent | None:
        if strict != self._window_strict:
            # Frames judged by the other trigger do not count towards this one.
            self._window.clear()
            self._window_strict = strict
        self._window.append(voiced)
        trigger = self.settings.strict_start if strict else self.settings.start
        recent = list(self._window)[-trigger.window_frames :]
        if sum(recent) < trigger.voiced_frames:
            return None
        self._onset = index - len(recent) + 1 + recent.index(True)
        self._last_voiced = index
        self._started_strict = strict
        self._pending = list(self._history)[-(index - self._onset + 1 + self._preroll) :]
        self._window.clear()
        self._state = _State.CANDIDATE
        return self._confirm(index)

    def _candidate(self, index: int, voiced: bool) -> VadEvent | None:
        if voiced:
            self._last_voiced = index
        if index - self._last_voiced >= self._hangover:
            return self._drop_candidate(index)
        return self._confirm(index)

    def _confirm(self, index: int) -> SpeechStarted | None:
        if self._last_voiced - self._onset + 1 < self._min:
            return None
        started = SpeechStarted(
            preroll=tuple(self._pending),
            at_frame=index,
            onset_frame=self._onset,
            strict=self._started_strict,
        )
        self._pending = []
        self._state = _State.SPEECH
        return started

    def _drop_candidate(self, index: int) -> SpeechDiscarded:
        discarded = SpeechDiscarded(
            at_frame=index,
            onset_frame=self._onset,
            length_frames=self._last_voiced - self._onset + 1,
        )
        self._pending = []
        self._window.clear()
        self._state = _State.IDLE
        return discarded

    def _speech(self, index: int, frame: bytes, voiced: bool) -> VadEvent:
        if voiced:
            self._last_voiced = index
        ended = self._end_of_speech(index)
        return ended or SpeechAudio(frame=frame, at_frame=index)

    def _end_of_speech(self, index: int) -> SpeechEnded | None:
        if index - self._last_voiced >= self._hangover:
            ended = SpeechEnded(index, EndReason.SILENCE, end_frame=self._last_voiced + 1)
        elif index - self._onset >= self._max:
            ended = SpeechEnded(index, EndReason.MAX_LENGTH, end_frame=index)
        else:
            return None
        self._window.clear()
        self._state = _State.IDLE
        return ended

    def _discard(self, index: int) -> VadEvent | None:
        """A frame that may hold echo: it breaks any start in progress and counts as silence."""
        self._window.clear()
        self._history.clear()
        if self._state is _State.CANDIDATE:
            return self._drop_candidate(index)
        if self._state is _State.SPEECH:
            return self._end_of_speech(index)
        return None
