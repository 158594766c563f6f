"""The audio seam: what the daemon needs from a microphone and a speaker, and their settings.

The ALSA implementations live in :mod:`device.capture` (:class:`AlsaAudioSource`) and
:mod:`device.playback` (:class:`AlsaAudioSink`); tests and the daemon only rely on the
protocols below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from device.backoff import Backoff

INPUT_RATE = 16_000  # what the Live API takes and webrtcvad classifies: 16 kHz mono s16le
OUTPUT_RATE = 24_000  # what the Live API speaks: 24 kHz mono s16le
VAD_FRAME_MS = (10, 20, 30)  # the only frame lengths webrtcvad accepts


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class CaptureSettings:
    """Microphone settings.

    ``device_rate`` None asks the device for 16 kHz; whatever rate it grants is resampled to
    16 kHz. ``queue_frames`` bounds the thread → asyncio bridge (drop-oldest beyond it).
    """

    device: str = "default"
    device_rate: int | None = None
    channels: int = 1
    period_ms: int = 20
    periods: int = 8
    frame_ms: int = 20
    queue_frames: int = 50
    retry: Backoff = field(default_factory=Backoff)
    close_timeout_s: float = 2.0
    # Audio faster than this many times real time is no microphone (an input at end of file);
    # None for a source fed faster on purpose (a recording replayed as fast as it is read).
    max_speed: float | None = 2.0

    def __post_init__(self) -> None:
        _require(bool(self.device), "capture device name is empty")
        _require(self.max_speed is None or self.max_speed > 1, "max_speed must be > 1")
        _require(self.frame_ms in VAD_FRAME_MS, f"frame_ms must be one of {VAD_FRAME_MS}")
        _require(self.device_rate is None or self.device_rate > 0, "device_rate must be > 0")
        _require(self.channels >= 1, "channels must be >= 1")
        _require(self.period_ms > 0 and self.periods >= 2, "need period_ms > 0, periods >= 2")
        _require(self.queue_frames >= 1, "queue_frames must be >= 1")


@dataclass(frozen=True)
class PlaybackSettings:
    """Speaker settings.

    ``device_rate`` None asks the device for 24 kHz; the model's audio is resampled to whatever
    it grants. Playback starts once ``jitter_ms`` of audio is queued, or once the first chunk
    has waited that long. At most ``max_queue_ms`` of audio waits (oldest dropped beyond it).
    """

    device: str = "default"
    device_rate: int | None = None
    channels: int = 1
    period_ms: int = 20
    periods: int = 4
    jitter_ms: int = 60
    max_queue_ms: int = 120_000
    retry: Backoff = field(default_factory=Backoff)
    close_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        _require(bool(self.device), "playback device name is empty")
        _require(self.device_rate is None or self.device_rate > 0, "device_rate must be > 0")
        _require(self.channels >= 1, "channels must be >= 1")
        _require(self.period_ms > 0 and self.periods >= 2, "need period_ms > 0, periods >= 2")
        _require(self.jitter_ms >= 0, "jitter_ms must be >= 0")
        _require(self.max_queue_ms > self.jitter_ms, "max_queue_ms must exceed jitter_ms")


@dataclass(frozen=True)
class CaptureStats:
    """Counters of a microphone since it was started."""

    frames_in: int  # VAD frames cut from the device stream
    dropped: int  # lost in the bridge because the consumer fell behind
    gated: int  # discarded while paused
    xruns: int  # overruns the device reported (audio lost, stream recovered)
    reopens: int  # times the device failed and was opened again
    device_open: bool = True  # False while the device is missing and being retried
    # True from the moment an open device delivered no microphone audio (too fast, empty, a
    # stuck value) until it delivers audio again, through every reopen attempt in between.
    stalled: bool = False


@dataclass(frozen=True)
class PlaybackStats:
    """Counters of a speaker since it was started."""

    chunks_in: int  # write() calls with audio
    frames_written: int  # device frames handed to ALSA
    xruns: int  # underruns recovered
    flushes: int
    discarded_bytes: int  # model audio thrown away: flushed, over the queue bound, no device
    reopens: int


class AudioSource(Protocol):
    """A microphone: fixed-length 16 kHz mono s16le frames, as an async iterator.

    Enter it to start capturing; the iterator waits (it does not end) while the device is
    missing and being retried, and ends once the source is closed.
    """

    paused: bool  # while True, frames are discarded at the source and counted as gated

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (e.g. 640 for 20 ms)."""
        ...

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the counters."""
        ...

    def take_gated_levels(self) -> list[float]:
        """The loudness (:func:`device.vad.level_db`) of the frames discarded while paused
        since the last call, oldest first (the newest few seconds' worth at most)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def __anext__(self) -> bytes: ...


class AudioSink(Protocol):
    """A speaker for the model's 24 kHz mono s16le audio."""

    @property
    def playing(self) -> bool:
        """True while audio is queued, being written, or still in the device buffer."""
        ...

    @property
    def stats(self) -> PlaybackStats:
        """A snapshot of the counters."""
        ...

    def write(self, pcm: bytes) -> None:
        """Queue audio without blocking."""
        ...

    def flush(self) -> None:
        """Discard queued audio and what the device holds, at once (barge-in, cancel)."""
        ...

    async def wait_idle(self) -> None:
        """Return once nothing is queued or playing (at once if nothing is)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
