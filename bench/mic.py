"""A microphone for the virtual sound card that remembers when the user stopped speaking.

Like :class:`device.virtual_audio.FifoMic` it feeds a FIFO in real time, one 20 ms chunk per
20 ms, silence between utterances. It also stamps the moment a marked sample (the end of a
fixture's speech) was spoken: a chunk written at ``t`` holds the 20 ms of audio that ended at
``t``, so a sample ``k`` samples before the chunk's end was spoken at ``t - k / rate``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
CHUNK_SAMPLES = RATE // 50  # 20 ms


@dataclass
class Mark:
    """A sample of an utterance, and when it was spoken (None until then)."""

    sample: int
    at: float | None = None


def speech_end(pcm: bytes, threshold_rms: float = 100.0, window: int = 160) -> int:
    """One past the last sample of the last 10 ms window louder than ``threshold_rms``."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    windows = len(samples) // window
    if windows == 0:
        return 0
    rms = np.sqrt(np.mean(samples[: windows * window].reshape(windows, window) ** 2, axis=1))
    loud = np.flatnonzero(rms > threshold_rms)
    return 0 if len(loud) == 0 else int((loud[-1] + 1) * window)


class ScriptedMic(threading.Thread):
    """Feeds 16 kHz mono s16le into a FIFO in real time; stamps marked samples."""

    def __init__(self, fifo: Path) -> None:
        super().__init__(name="bench-mic", daemon=True)
        self._fifo = fifo
        self._chunk_bytes = CHUNK_SAMPLES * 2
        self._queue: deque[tuple[bytes, list[tuple[int, Mark]]]] = deque()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._fd = -1

    def say(self, pcm: bytes, mark_at: int | None = None) -> Mark | None:
        """Queue an utterance after what is queued; ``mark_at`` is a sample index in it."""
        mark = None if mark_at is None else Mark(mark_at)
        chunks = [pcm[i : i + self._chunk_bytes] for i in range(0, len(pcm), self._chunk_bytes)]
        with self._lock:
            for n, chunk in enumerate(chunks):
                here = []
                if mark is not None and n == mark.sample // CHUNK_SAMPLES:
                    here.append((CHUNK_SAMPLES - mark.sample % CHUNK_SAMPLES, mark))
                self._queue.append((chunk.ljust(self._chunk_bytes, b"\x00"), here))
        return mark

    @property
    def idle(self) -> bool:
        """Nothing queued: silence goes out."""
        with self._lock:
            return not self._queue

    def start(self) -> None:
        """Open the FIFO read-write (so the reader's open does not block), then feed it."""
        self._fd = os.open(self._fifo, os.O_RDWR | os.O_NONBLOCK)
        super().start()

    def stop(self) -> None:
        """Stop feeding and close the FIFO."""
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        silence = b"\x00" * self._chunk_bytes
        period = CHUNK_SAMPLES / RATE
        next_at = time.monotonic()
        try:
            while not self._halt.is_set():
                with self._lock:
                    chunk, marks = self._queue.popleft() if self._queue else (silence, [])
                with contextlib.suppress(BlockingIOError):
                    # A full pipe means nobody is capturing: like a real mic, audio is lost.
                    os.write(self._fd, chunk)
                written = time.monotonic()
                for samples_after, mark in marks:
                    mark.at = written - samples_after / RATE
                next_at += period
                self._halt.wait(max(0.0, next_at - time.monotonic()))
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
