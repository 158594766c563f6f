"""Speaker playback to an ALSA PCM: a queue filled from asyncio, drained by one writer thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import numpy as np

from device.alsa_pcm import Pcm, PcmError, PcmGrant, PcmOpener, PcmRequest, open_alsa_pcm
from device.audio import OUTPUT_RATE, PlaybackSettings, PlaybackStats
from device.resample import StreamResampler, from_mono

log = logging.getLogger(__name__)

_OUTPUT_BYTES_PER_MS = OUTPUT_RATE * 2 // 1000


class _Step(enum.Enum):
    WRITE = "write"  # resample and write the next chunk
    DROP = "drop"  # a flush happened: discard what the device holds
    DRAIN = "drain"  # nothing queued: let the device play out, then stop the stream
    STOP = "stop"


def _resolve(future: concurrent.futures.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AlsaAudioSink:
    """An :class:`~device.audio.AudioSink` writing the model's 24 kHz audio to an ALSA PCM.

    ``write()`` and ``flush()`` are called on the event loop and never block. One worker thread
    owns the PCM and makes every ALSA call: a flush empties the queue at once and the worker
    drops the device buffer (``snd_pcm_drop``) as soon as its current period write returns,
    which on a real device is within one period. A new stream starts once ``jitter_ms`` of
    audio is queued or the first chunk has waited that long. ``opener`` is the hardware seam.
    """

    def __init__(self, settings: PlaybackSettings, *, opener: PcmOpener = open_alsa_pcm) -> None:
        self._settings = settings
        self._opener = opener
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._first_queued_at: float | None = None
        self._generation = 0  # bumped by every flush
        self._active = False
        self._device_open = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._grant: PcmGrant | None = None
        self._chunks_in = 0
        self._frames_written = 0
        self._xruns = 0
        self._flushes = 0
        self._discarded_bytes = 0
        self._reopens = 0

    @property
    def playing(self) -> bool:
        """True while audio is queued, being written, or still in the device buffer."""
        return self._active

    @property
    def grant(self) -> PcmGrant | None:
        """The parameters the device granted when last opened; None before that."""
        return self._grant

    @property
    def stats(self) -> PlaybackStats:
        """A snapshot of the counters."""
        with self._cond:
            return PlaybackStats(
                chunks_in=self._chunks_in,
                frames_written=self._frames_written,
                xruns=self._xruns,
                flushes=self._flushes,
                discarded_bytes=self._discarded_bytes,
                reopens=self._reopens,
            )

    def write(self, pcm: bytes) -> None:
        """Queue 24 kHz mono s16le audio; discarded (and counted) while no device is open."""
        if len(pcm) % 2:
            raise ValueError("s16le audio must have an even number of bytes")
        if not pcm:
            return
        max_bytes = self._settings.max_queue_ms * _OUTPUT_BYTES_PER_MS
        with self._cond:
            if self._stopping or not self._device_open:
                self._discarded_bytes += len(pcm)
                return
            self._chunks_in += 1
            self._queue.append(pcm)
            self._queued_bytes += len(pcm)
            if self._first_queued_at is None:
                self._first_queued_at = time.monotonic()
            while self._queued_bytes > max_bytes:
                self._discard(self._queue.popleft())
            self._active = True
            self._cond.notify()

    def flush(self) -> None:
        """Discard queued audio now; the worker drops the device buffer right after."""
        with self._cond:
            self._generation += 1
            self._flushes += 1
            while self._queue:
                self._discard(self._queue.popleft())
            self._first_queued_at = None
            self._active = False
            self._cond.notify()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once nothing is queued or playing."""
        while True:
            with self._cond:
                if not self._active:
                    return
                self._idle.clear()
            await self._idle.wait()

    async def __aenter__(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("an AlsaAudioSink can be entered only once")
        self._loop = asyncio.get_running_loop()
        first_attempt: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run,
            args=(first_attempt,),
            name=f"playback {self._settings.device}",
            daemon=True,  # a write stuck in a broken driver must not keep the process alive
        )
        self._thread.start()
        await asyncio.wrap_future(first_attempt)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self._settings.close_timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "playback thread for %r did not stop within %.1f s",
                    self._settings.device,
                    self._settings.close_timeout_s,
                )

    # Everything below runs on the worker thread.

    def _discard(self, chunk: bytes) -> None:
        self._queued_bytes -= len(chunk)
        self._discarded_bytes += len(chunk)

    def _set_idle(self) -> None:
        """Mark not playing (the lock is held) and wake wait_idle() on the loop."""
        self._active = False
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._idle.set)

    def _request(self) -> PcmRequest:
        rate = self._settings.device_rate or OUTPUT_RATE
        return PcmRequest(
            device=self._settings.device,
            capture=False,
            rate=rate,
            channels=self._settings.channels,
            period_frames=max(1, rate * self._settings.period_ms // 1000),
            periods=self._settings.periods,
        )

    def _wait_stop(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout)

    def _run(self, first_attempt: concurrent.futures.Future[None]) -> None:
        """Open, serve, and on failure retry with back-off until stopped."""
        request = self._request()
        delays: Iterator[float] = self._settings.retry.delays()
        opened = 0
        try:
            while not self._stopping:
                try:
                    pcm = self._opener(request)
                except PcmError as exc:
                    delay = next(delays)
                    log.warning(
                        "playback device %r cannot be opened: %s; retrying in %.2f s",
                        request.device,
                        exc,
                        delay,
                        extra={"AUDIO_DEVICE": request.device},
                    )
                    _resolve(first_attempt)
                    self._wait_stop(delay)
                    continue
                opened += 1
                with self._cond:
                    self._reopens = opened - 1
                    self._device_open = True
                _resolve(first_attempt)
                try:
                    self._serve(pcm, request)
                except PcmError as exc:
                    delay = next(delays)
                    log.warning(
                        "playback device %r failed: %s; reopening in %.2f s",
                        request.device,
                        exc,
                        delay,
                        extra={"AUDIO_DEVICE": request.device},
                    )
                    self._lose_device()
                    self._wait_stop(delay)
                else:
                    delays = self._settings.retry.delays()
                finally:
                    pcm.close()
        except Exception:
            log.exception("playback thread for %r crashed", request.device)
            self._lose_device()
        finally:
            _resolve(first_attempt)

    def _lose_device(self) -> None:
        with self._cond:
            self._device_open = False
            while self._queue:
                self._discard(self._queue.popleft())
            self._first_queued_at = None
            self._set_idle()

    def _next_step(self, streaming: bool, generation: int) -> tuple[_Step, bytes]:
        """Wait for something to do: a chunk to write, a flush, a drain, or the stop."""
        jitter_bytes = self._settings.jitter_ms * _OUTPUT_BYTES_PER_MS
        jitter_s = self._settings.jitter_ms / 1000
        with self._cond:
            while True:
                if self._stopping:
                    return _Step.STOP, b""
                if self._generation != generation:
                    return _Step.DROP, b""
                if self._queue:
                    waited = time.monotonic() - (self._first_queued_at or 0.0)
                    if streaming or self._queued_bytes >= jitter_bytes or waited >= jitter_s:
                        chunk = self._queue.popleft()
                        self._queued_bytes -= len(chunk)
                        if not self._queue:
                            self._first_queued_at = None
                        return _Step.WRITE, chunk
                    self._cond.wait(jitter_s - waited)
                elif streaming:
                    return _Step.DRAIN, b""
                else:
                    self._cond.wait()

    def _serve(self, pcm: Pcm, request: PcmRequest) -> None:
        """Play queued audio until stopped; raises :class:`PcmError` when the device fails."""
        grant = pcm.grant
        self._grant = grant
        resampler = StreamResampler(OUTPUT_RATE, grant.rate)
        log.info(
            "playback device %r open: %d Hz (asked %d), %d channel(s), period %d frames "
            "(%.1f ms), buffer %d frames%s",
            request.device,
            grant.rate,
            request.rate,
            grant.channels,
            grant.period_frames,
            grant.period_ms,
            grant.buffer_frames,
            "" if resampler.passthrough else f", resampling from {OUTPUT_RATE} Hz",
            extra={"AUDIO_DEVICE": request.device},
        )
        period_s = grant.period_ms / 1000
        generation = self._generation
        streaming = False  # the device stream holds our audio and the resampler has state
        finished = False  # the resampler tail of the current stream has been written
        while True:
            step, chunk = self._next_step(streaming, generation)
            if step is _Step.STOP:
                return
            if step is _Step.DROP:
                generation = self._generation
                pcm.drop()
                resampler.reset()
                streaming = finished = False
            elif step is _Step.WRITE:
                samples = resampler.process(np.frombuffer(chunk, dtype="<i2"))
                self._write(pcm, from_mono(samples, grant.channels), generation)
                streaming, finished = True, False
            elif not finished and pcm.pending_frames() <= grant.period_frames:
                # Nearly played out and nothing new: end the stream with the resampler's tail.
                self._write(pcm, from_mono(resampler.finish(), grant.channels), generation)
                finished = True
            elif finished and pcm.pending_frames() == 0:
                pcm.drop()  # stop the stream before it underruns, so no xrun is reported
                streaming = finished = False
                with self._cond:
                    if not self._queue and self._generation == generation:
                        self._set_idle()
            else:
                with self._cond:
                    if not self._queue and not self._stopping and self._generation == generation:
                        self._cond.wait(period_s)

    def _write(self, pcm: Pcm, data: bytes, generation: int) -> None:
        """Write period by period, abandoning the rest as soon as a flush or stop happens."""
        grant = pcm.grant
        frame_size = 2 * grant.channels
        step = grant.period_frames * frame_size
        for start in range(0, len(data), step):
            if self._generation != generation or self._stopping:
                return
            piece = data[start : start + step]
            xruns = pcm.write(piece)
            with self._cond:
                self._xruns += xruns
                self._frames_written += len(piece) // frame_size
            if xruns:
                log.warning(
                    "playback underrun on %r (%d so far)",
                    self._settings.device,
                    self._xruns,
                    extra={"AUDIO_DEVICE": self._settings.device, "XRUNS": self._xruns},
                )
