"""A microphone that vanishes under a real ALSA ``file`` PCM: its FIFO's writer gone and the
FIFO unlinked, the plugin repeats its last buffer as fast as it is read. It must be detected,
logged once with the device name, reopened with back-off (no busy loop), and withhold the
watchdog until audio flows again."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device.alsa_pcm import Pcm, PcmGrant, PcmRequest, open_alsa_pcm
from device.audio import CaptureSettings
from device.backoff import Backoff
from device.capture import AlsaAudioSource
from device.capture_check import MAX_EMPTY_READS, STUCK_S, StreamCheck
from device.notify import WatchdogPolicy, capture_progress
from device.virtual_audio import MIC_PCM, FifoMic
from tests.speech_fixtures import tone

POLL_S = 0.02
STALLED = "delivers no microphone audio"


class CountingPcm:
    """A real ALSA PCM, its reads counted: the narrowest seam that shows a busy loop."""

    def __init__(self, pcm: Pcm, counts: Counts) -> None:
        self._pcm = pcm
        self._counts = counts

    @property
    def grant(self) -> PcmGrant:
        return self._pcm.grant

    def read(self) -> bytes | None:
        self._counts.reads += 1
        return self._pcm.read()

    def write(self, data: bytes) -> int:
        return self._pcm.write(data)

    def pending_frames(self) -> int:
        return self._pcm.pending_frames()

    def drop(self) -> None:
        self._pcm.drop()

    def close(self) -> None:
        self._pcm.close()


class Counts:
    """Reads, and when each open was attempted."""

    def __init__(self) -> None:
        self.reads = 0
        self.opens: list[float] = []

    def open(self, request: PcmRequest) -> Pcm:
        self.opens.append(time.monotonic())
        return CountingPcm(open_alsa_pcm(request), self)


async def until(done: Callable[[], bool], within: float) -> None:
    """State the capture thread owns has no event on this loop: polled, bounded."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)


def mic_fifo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The FIFO ``plv_mic`` reads, made."""
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PLV_MIC_IN", str(fifo))
    return fifo


def bring_back(fifo: Path) -> FifoMic:
    """A new FIFO, fed in real time, moved into place (so the reader's open never blocks)."""
    staging = fifo.with_name("staging.fifo")
    os.mkfifo(staging)
    mic = FifoMic(staging)
    mic.start()
    staging.rename(fifo)
    mic.say(tone(330.0, 3.0, 16_000))
    return mic


async def test_a_vanished_fifo_mic_is_detected_reopened_with_back_off_and_withholds_the_watchdog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.capture")
    fifo = mic_fifo(tmp_path, monkeypatch)
    mic = FifoMic(fifo)
    mic.start()
    mic.say(tone(440.0, 1.0, 16_000))
    counts = Counts()
    settings = CaptureSettings(
        device=MIC_PCM, queue_frames=100, retry=Backoff(initial_s=0.1, factor=2.0, max_s=1.6)
    )
    frames = 0

    async def drain(source: AlsaAudioSource) -> None:
        nonlocal frames
        async for _ in source:
            frames += 1

    async with asyncio.timeout(60), AlsaAudioSource(settings, opener=counts.open) as source:
        consumer = asyncio.create_task(drain(source))
        try:
            await until(lambda: frames >= 50, within=10)
            watchdog = WatchdogPolicy(1.0, capture_progress(source.stats))

            # The writer goes, and the FIFO with it.
            await asyncio.to_thread(mic.stop)
            fifo.unlink()
            reads_before = counts.reads
            await until(lambda: source.stats.stalled, within=10)
            reads_to_detect = counts.reads - reads_before
            frames_at_stall = source.stats.frames_in
            opens_at_stall = len(counts.opens)

            # Reopened with a growing delay; nothing read meanwhile, nothing counted.
            await until(lambda: len(counts.opens) >= opens_at_stall + 4, within=15)
            reads_while_retrying = counts.reads - reads_before - reads_to_detect
            attempts = counts.opens[opens_at_stall:]
            gaps = [b - a for a, b in itertools.pairwise(attempts)]
            assert source.stats.stalled
            assert source.stats.frames_in == frames_at_stall
            assert watchdog.verdict(capture_progress(source.stats), 1.0) is None
            assert watchdog.verdict(capture_progress(source.stats), 1.0) is not None

            # The mic comes back: audio flows, the stall ends, the pings would resume.
            again = bring_back(fifo)
            await until(lambda: not source.stats.stalled, within=20)
            await asyncio.to_thread(again.stop)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            with contextlib.suppress(FileNotFoundError):
                fifo.unlink()

    # The end of file was read at full speed only until the check had seen two windows of 2 s
    # of audio (the first after an open may be a backlog) come in no time: 200 periods.
    assert reads_to_detect <= 400, reads_to_detect
    assert reads_while_retrying <= 5, reads_while_retrying
    assert all(later > 1.5 * earlier for earlier, later in itertools.pairwise(gaps)), gaps
    messages = [r.getMessage() for r in caplog.records]
    back = next(n for n, m in enumerate(messages) if "delivers audio again" in m)
    # Once for the whole stretch (stopping the second writer at the end begins another).
    stalls = [m for m in messages[:back] if STALLED in m]
    assert len(stalls) == 1, stalls
    assert f"capture device {MIC_PCM!r} {STALLED}" in stalls[0]
    assert "x real time" in stalls[0]


async def test_a_stuck_value_is_a_stall_and_silence_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.capture")
    fifo = mic_fifo(tmp_path, monkeypatch)
    mic = FifoMic(fifo)
    mic.start()
    # Digital silence first (the feeder's own, between utterances), then a DC value that
    # never moves, both paced in real time.
    mic.say(b"\x00\x00" * int(16_000 * (STUCK_S + 1)))
    mic.say(b"\x21\x03" * int(16_000 * (STUCK_S + 4)))
    settings = CaptureSettings(device=MIC_PCM, queue_frames=1000, retry=Backoff(initial_s=0.1))
    try:
        async with asyncio.timeout(40), AlsaAudioSource(settings) as source:
            async for _ in source:
                if source.stats.stalled or mic.idle.is_set():
                    break
            stalled = source.stats.stalled
    finally:
        await asyncio.to_thread(mic.stop)
    assert stalled
    [line] = [r.getMessage() for r in caplog.records if STALLED in r.getMessage()]
    assert "every sample reads 801" in line


def test_the_check_names_empty_reads_and_spares_backlogs_and_paced_audio() -> None:
    rate, period = 16_000, 320
    audio = tone(440.0, 0.02, rate)
    paced = StreamCheck(rate, buffer_frames=8 * period, channels=1)
    assert all(paced.feed(audio, now=n * 0.02) is None for n in range(500))
    assert paced.healthy_windows >= 3
    # After an open, a FIFO's 2 s backlog comes at once; then real time.
    backlog = StreamCheck(rate, buffer_frames=8 * period, channels=1)
    assert all(backlog.feed(audio, now=0.0) is None for _ in range(101))
    assert all(backlog.feed(audio, now=n * 0.02) is None for n in range(1, 300))
    empty = StreamCheck(rate, buffer_frames=8 * period, channels=1)
    verdicts = [empty.feed(b"", now=0.0) for _ in range(MAX_EMPTY_READS)]
    assert verdicts[:-1] == [None] * (MAX_EMPTY_READS - 1)
    assert verdicts[-1] == f"{MAX_EMPTY_READS} empty reads in a row (end of file)"
