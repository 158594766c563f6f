"""Microphone capture from an ALSA PCM: read in a thread, resample, re-chunk, bridge to asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

from device.alsa_pcm import Pcm, PcmError, PcmGrant, PcmOpener, PcmRequest, open_alsa_pcm
from device.audio import INPUT_RATE, CaptureSettings, CaptureStats
from device.capture_check import StreamCheck
from device.frames import BridgeClosed, FrameBridge, Rechunker, frame_bytes
from device.resample import StreamResampler, to_mono
from device.vad import level_db

log = logging.getLogger(__name__)


def _resolve(future: concurrent.futures.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CaptureStalled(PcmError):
    """The device reads without error but delivers no microphone audio; reopen it."""


class AlsaAudioSource:
    """An :class:`~device.audio.AudioSource` reading an ALSA capture PCM.

    One worker thread owns the PCM: it opens it (retrying with back-off while it is missing),
    reads periods of whatever size the device grants, converts them to 16 kHz mono, cuts them
    into VAD frames and hands each frame to the event loop through one :class:`FrameBridge`.
    A device that reads but delivers no microphone audio (:class:`StreamCheck`) is stalled:
    it is logged once, closed and reopened with the same back-off, and counts as stalled until
    real audio flows again. ``opener`` is the seam to the hardware; the default opens a real
    ALSA PCM.
    """

    def __init__(self, settings: CaptureSettings, *, opener: PcmOpener = open_alsa_pcm) -> None:
        self._settings = settings
        self._opener = opener
        self._frame_bytes = frame_bytes(settings.frame_ms, INPUT_RATE)
        self._bridge: FrameBridge | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._paused = False
        self._grant: PcmGrant | None = None
        self._frames_in = 0
        self._xruns = 0
        self._reopens = 0
        self._device_open = False
        self._stalled = False
        self._proved = False  # the open device delivered a healthy window of audio

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (16 kHz mono s16le of ``settings.frame_ms``)."""
        return self._frame_bytes

    @property
    def grant(self) -> PcmGrant | None:
        """The parameters the device granted when last opened; None before that."""
        return self._grant

    @property
    def paused(self) -> bool:
        """While True, frames (including those already queued) are discarded as gated."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if self._bridge is not None:
            self._bridge.paused = value

    def take_gated_levels(self) -> list[float]:
        """Loudness (:func:`device.vad.level_db`) of the frames gated since the last call."""
        return [] if self._bridge is None else self._bridge.take_gated_levels()

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the counters."""
        bridge = self._bridge
        return CaptureStats(
            frames_in=self._frames_in,
            dropped=bridge.dropped if bridge is not None else 0,
            gated=bridge.gated if bridge is not None else 0,
            xruns=self._xruns,
            reopens=self._reopens,
            device_open=self._device_open,
            stalled=self._stalled,
        )

    async def __aenter__(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("an AlsaAudioSource can be entered only once")
        bridge = FrameBridge(asyncio.get_running_loop(), self._settings.queue_frames, level_db)
        bridge.paused = self._paused
        self._bridge = bridge
        first_attempt: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run,
            args=(bridge, first_attempt),
            name=f"capture {self._settings.device}",
            daemon=True,  # a read stuck in a broken driver must not keep the process alive
        )
        self._thread.start()
        # Returning after the first attempt makes "open or failing" observable to the caller.
        await asyncio.wrap_future(first_attempt)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._bridge is not None:
            self._bridge.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self._settings.close_timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "capture thread for %r did not stop within %.1f s",
                    self._settings.device,
                    self._settings.close_timeout_s,
                )

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._bridge is None:
            raise RuntimeError("enter the AlsaAudioSource before iterating it")
        try:
            return await self._bridge.get()
        except BridgeClosed:
            raise StopAsyncIteration from None

    def _request(self) -> PcmRequest:
        rate = self._settings.device_rate or INPUT_RATE
        return PcmRequest(
            device=self._settings.device,
            capture=True,
            rate=rate,
            channels=self._settings.channels,
            period_frames=max(1, rate * self._settings.period_ms // 1000),
            periods=self._settings.periods,
        )

    def _run(self, bridge: FrameBridge, first_attempt: concurrent.futures.Future[None]) -> None:
        """The worker thread: open, pump, and on failure retry with back-off until stopped."""
        request = self._request()
        delays: Iterator[float] = self._settings.retry.delays()
        opened = 0
        try:
            while not self._stop.is_set():
                try:
                    pcm = self._opener(request)
                except PcmError as exc:
                    delay = next(delays)
                    log.warning(
                        "capture device %r cannot be opened: %s; retrying in %.2f s",
                        request.device,
                        exc,
                        delay,
                        extra={"AUDIO_DEVICE": request.device},
                    )
                    _resolve(first_attempt)
                    self._stop.wait(delay)
                    continue
                opened += 1
                self._reopens = opened - 1
                self._device_open = True
                _resolve(first_attempt)
                try:
                    if self._pump(pcm, request, bridge):
                        delays = self._settings.retry.delays()
                except PcmError as exc:
                    self._device_open = False
                    if self._proved:
                        delays = self._settings.retry.delays()
                    delay = next(delays)
                    self._failed(request.device, exc, delay)
                    self._stop.wait(delay)
                finally:
                    self._device_open = False
                    pcm.close()
        except Exception:
            log.exception("capture thread for %r crashed", request.device)
            bridge.close_threadsafe()  # ending the iterator beats a silent hang
        finally:
            _resolve(first_attempt)

    def _failed(self, device: str, exc: PcmError, delay: float) -> None:
        if not isinstance(exc, CaptureStalled):
            log.warning(
                "capture device %r failed: %s; reopening in %.2f s",
                device,
                exc,
                delay,
                extra={"AUDIO_DEVICE": device},
            )
        elif not self._stalled:
            self._stalled = True
            log.warning(
                "capture device %r delivers no microphone audio: %s; reopening with back-off "
                "(first in %.2f s) until it does",
                device,
                exc,
                delay,
                extra={"AUDIO_DEVICE": device},
            )
        else:
            # Once per stretch: the journal has the first line, and will have the recovery.
            log.debug("capture device %r still stalled: %s; reopen in %.2f s", device, exc, delay)

    def _pump(self, pcm: Pcm, request: PcmRequest, bridge: FrameBridge) -> bool:
        """Read until stopped; returns whether any period was read (raises on device failure)."""
        grant = pcm.grant
        self._grant = grant
        resampler = StreamResampler(grant.rate, INPUT_RATE)
        chunker = Rechunker(self._frame_bytes)
        log.info(
            "capture device %r open: %d Hz (asked %d), %d channel(s), period %d frames "
            "(%.1f ms), buffer %d frames%s",
            request.device,
            grant.rate,
            request.rate,
            grant.channels,
            grant.period_frames,
            grant.period_ms,
            grant.buffer_frames,
            "" if resampler.passthrough else f", resampling to {INPUT_RATE} Hz",
            extra={"AUDIO_DEVICE": request.device},
        )
        read_any = False
        self._proved = False
        check = StreamCheck(
            grant.rate, grant.buffer_frames, grant.channels, self._settings.max_speed
        )
        while not self._stop.is_set():
            data = pcm.read()
            if data is not None:
                problem = check.feed(data, time.monotonic())
                if problem is not None:
                    raise CaptureStalled(problem)
                if check.healthy_windows and not self._proved:
                    self._proved = True
                    if self._stalled:
                        self._stalled = False
                        log.info(
                            "capture device %r delivers audio again",
                            request.device,
                            extra={"AUDIO_DEVICE": request.device},
                        )
            if data is None:
                self._xruns += 1
                log.warning(
                    "capture overrun on %r (%d so far)",
                    request.device,
                    self._xruns,
                    extra={"AUDIO_DEVICE": request.device, "XRUNS": self._xruns},
                )
                continue
            read_any = True
            samples = resampler.process(to_mono(data, grant.channels))
            for frame in chunker.push(samples.astype("<i2").tobytes()):
                self._frames_in += 1
                bridge.put(frame)
        return read_any
