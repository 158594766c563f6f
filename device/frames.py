"""Fixed-size audio frames: re-chunking whatever ALSA returns, and the thread → asyncio bridge."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable

BYTES_PER_SAMPLE = 2  # s16le


def frame_bytes(frame_ms: int, rate: int) -> int:
    """Bytes in one mono s16le frame of ``frame_ms`` milliseconds at ``rate`` Hz."""
    samples, remainder = divmod(rate * frame_ms, 1000)
    if remainder:
        raise ValueError(f"{frame_ms} ms is not a whole number of samples at {rate} Hz")
    return samples * BYTES_PER_SAMPLE


class Rechunker:
    """Cuts a byte stream into frames of exactly ``size`` bytes, keeping the remainder."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"frame size must be > 0, got {size}")
        self._size = size
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back until the next complete frame."""
        return len(self._pending)

    def push(self, data: bytes) -> list[bytes]:
        """Append ``data`` and return every frame it completes, oldest first."""
        self._pending += data
        whole = len(self._pending) - len(self._pending) % self._size
        frames = [bytes(self._pending[i : i + self._size]) for i in range(0, whole, self._size)]
        del self._pending[:whole]
        return frames

    def clear(self) -> None:
        """Forget the partial frame (after a gap in the stream)."""
        self._pending.clear()


class BridgeClosed(Exception):
    """Raised by :meth:`FrameBridge.get` once the bridge is closed."""


class FrameBridge:
    """The one hand-off of frames from a reader thread into the event loop.

    Bounded and drop-oldest: a consumer that falls behind loses the oldest audio, never the
    newest, and the loss is counted. At most one wake-up callback is queued on the loop at a
    time, so a producer running ahead cannot flood the loop either. While paused, frames are
    discarded on arrival and counted as gated; only their ``measure`` (a loudness, for the VAD's
    noise floor) is kept, the newest ``GATED_LEVELS`` of them.
    """

    GATED_LEVELS = 500  # 10 s of 20 ms frames: more than any noise floor remembers

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        measure: Callable[[bytes], float] | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self._loop = loop
        self._capacity = capacity
        self._lock = threading.Lock()
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._wake_pending = False
        self._paused = False
        self._closed = False
        self._measure = measure
        self._gated_levels: deque[float] = deque(maxlen=self.GATED_LEVELS)
        self.accepted = 0
        self.dropped = 0
        self.gated = 0

    @property
    def paused(self) -> bool:
        """True while arriving frames are discarded (and counted as gated)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        with self._lock:
            self._paused = value
            if value:
                # Frames queued before the pause belong to the gated period too.
                self.gated += len(self._frames)
                self._keep_levels(self._frames)
                self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def put(self, frame: bytes) -> None:
        """Offer a frame; safe from any thread."""
        with self._lock:
            if self._closed:
                return
            if self._paused:
                self.gated += 1
                self._keep_levels((frame,))
                return
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self.accepted += 1
            if self._wake_pending:
                return
            self._wake_pending = True
        # RuntimeError: the loop is closed, nobody is left to read the frame.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake)

    def _keep_levels(self, frames: Iterable[bytes]) -> None:
        if self._measure is not None:
            self._gated_levels.extend(self._measure(frame) for frame in frames)

    def take_gated_levels(self) -> list[float]:
        """The measures of the frames gated since the last call, oldest first."""
        with self._lock:
            levels = list(self._gated_levels)
            self._gated_levels.clear()
        return levels

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()

    async def get(self) -> bytes:
        """The oldest frame, waiting for one; raises :class:`BridgeClosed` once closed."""
        while True:
            with self._lock:
                if self._frames:
                    return self._frames.popleft()
                if self._closed:
                    raise BridgeClosed
                self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        """Stop accepting frames, discard queued ones and wake the reader; call on the loop."""
        with self._lock:
            self._closed = True
            self._frames.clear()
        self._ready.set()

    def close_threadsafe(self) -> None:
        """:meth:`close` from a worker thread (a no-op once the loop is gone)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.close)
