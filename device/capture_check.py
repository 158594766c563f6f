"""Is a capture device still a microphone? Judged on the rate and the content of its periods.

A device can open and read without error and still deliver nothing: the ALSA ``file`` plugin
whose input went away repeats its last buffer as fast as it is read, a broken driver may hand
back empty reads, a dead ADC a value that never moves. :class:`StreamCheck` is fed every
period read and names what is wrong, so the capture thread can close and reopen the device
instead of spinning. Pure: the caller passes the clock.
"""

from __future__ import annotations

import numpy as np

# More than this many times real time, beyond what the device buffer could have held, is no
# microphone.
MAX_SPEED = 2.0
# Audio seconds over which the speed is judged.
WINDOW_S = 2.0
# Empty reads in a row: a device at end of file, read in a loop.
MAX_EMPTY_READS = 100
# Audio seconds of one unchanging non-zero sample value. Exact zeros are digital silence (a
# muted input, or the virtual card's FIFO between utterances), not a fault.
STUCK_S = 5.0


class StreamCheck:
    """Fed each period read from a capture PCM of ``rate`` Hz holding ``buffer_frames``;
    ``max_speed`` None skips the rate check (a source fed faster than real time on purpose)."""

    def __init__(
        self, rate: int, buffer_frames: int, channels: int, max_speed: float | None = MAX_SPEED
    ) -> None:
        self._rate = rate
        self._max_speed = max_speed
        self._buffer_s = buffer_frames / rate
        self._frame_bytes = 2 * channels
        self._window_start: float | None = None
        self._window_frames = 0
        self._empty = 0
        self._stuck_value: int | None = None
        self._stuck_frames = 0
        self._windows = 0
        self.healthy_windows = 0

    def feed(self, data: bytes, now: float) -> str | None:
        """One period read at ``now``; what is wrong with the stream, or None."""
        frames = len(data) // self._frame_bytes
        if frames == 0:
            self._empty += 1
            if self._empty >= MAX_EMPTY_READS:
                return f"{self._empty} empty reads in a row (end of file)"
            return None
        self._empty = 0
        return self._stuck(data, frames) or self._speed(frames, now)

    def _stuck(self, data: bytes, frames: int) -> str | None:
        samples = np.frombuffer(data, dtype="<i2", count=frames * self._frame_bytes // 2)
        low, high = int(samples.min()), int(samples.max())
        if low != high or low == 0:
            self._stuck_value, self._stuck_frames = None, 0
            return None
        if low != self._stuck_value:
            self._stuck_value, self._stuck_frames = low, 0
        self._stuck_frames += frames
        if self._stuck_frames >= STUCK_S * self._rate:
            return f"every sample reads {low} for {self._stuck_frames / self._rate:.1f} s (stuck)"
        return None

    def _speed(self, frames: int, now: float) -> str | None:
        if self._window_start is None:
            self._window_start = now
            return None
        self._window_frames += frames
        audio_s = self._window_frames / self._rate
        if audio_s < WINDOW_S:
            return None
        wall_s = now - self._window_start
        self._window_start, self._window_frames = now, 0
        self._windows += 1
        if self._windows == 1:
            # A backlog may come at once after an open (a FIFO holds 2 s): judge from the next.
            return None
        # What the buffer held when the window began may come at once; the rest cannot.
        if self._max_speed is not None and audio_s - self._buffer_s > self._max_speed * wall_s:
            speed = audio_s / wall_s if wall_s > 0 else float("inf")
            return f"{audio_s:.1f} s of audio in {wall_s:.2f} s, {speed:.0f}x real time"
        self.healthy_windows += 1
        return None
