"""Playback through a real ALSA PCM (the ``file`` plugin writing a file or a FIFO).

What reaches the "speaker" must be what was queued — sample for sample at the model's 24 kHz,
the same signal after resampling for a 48 kHz device — and after a flush nothing of the
interrupted reply may follow beyond what the device already held.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soxr

from device.audio import OUTPUT_RATE, PlaybackSettings
from device.playback import AlsaAudioSink
from device.virtual_audio import SPEAKER_PCM
from tests.speech_fixtures import dominant_hz, tone

CHUNK = OUTPUT_RATE * 2 // 25  # the model sends its audio in 40 ms pieces
PIPE_BYTES = 4096  # the smallest pipe Linux allows: the "air" between device and listener


def reply(seconds: float, seed: int) -> bytes:
    """A tone with noise on it: every sample differs, so an offset or a repeat shows."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * OUTPUT_RATE)) / OUTPUT_RATE
    samples = 6000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 500, len(t))
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


async def play(sink: AlsaAudioSink, pcm: bytes) -> None:
    for start in range(0, len(pcm), CHUNK):
        sink.write(pcm[start : start + CHUNK])
    async with asyncio.timeout(10):
        await sink.wait_idle()


async def test_24khz_reply_reaches_the_device_sample_for_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "speaker.raw"
    monkeypatch.setenv("PLV_SPEAKER_OUT", str(out))
    first, second = reply(1.0, seed=1), reply(0.5, seed=2)
    async with AlsaAudioSink(PlaybackSettings(device=SPEAKER_PCM)) as sink:
        await play(sink, first)
        await play(sink, second)
        assert sink.stats.xruns == 0
    written = out.read_bytes()
    # Both replies, in order, then nothing but the silence that completes the last period.
    assert written[: len(first) + len(second)] == first + second
    assert not written[len(first) + len(second) :].strip(b"\x00")


async def test_48khz_device_gets_the_resampled_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "speaker.raw"
    monkeypatch.setenv("PLV_SPEAKER_OUT", str(out))
    queued = tone(1000.0, 1.0, OUTPUT_RATE)
    settings = PlaybackSettings(device=SPEAKER_PCM, device_rate=48_000, channels=2)
    async with AlsaAudioSink(settings) as sink:
        await play(sink, queued)
        assert sink.grant is not None
        assert sink.grant.rate == 48_000
    stereo = np.frombuffer(out.read_bytes(), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(stereo[:, 0], stereo[:, 1])
    left = stereo[:, 0].astype(np.float64)
    expected = soxr.resample(np.frombuffer(queued, dtype="<i2"), OUTPUT_RATE, 48_000, "HQ")
    assert len(left) >= len(expected)
    error = left[: len(expected)] - expected.astype(np.float64)
    # Streaming in chunks matches resampling in one go, up to rounding.
    assert float(np.sqrt(np.mean(error**2))) < 2.0
    assert dominant_hz(stereo[:, 0].tobytes(), 48_000) == pytest.approx(1000.0, rel=0.01)


# The listener runs in its own process: the ``file`` plugin writes buffered audio to the FIFO
# inside snd_pcm_drop(), which pyalsaaudio calls holding the GIL, so a listener thread in this
# process could never drain the pipe that write waits on.
LISTEN = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
with open(sys.argv[2], "wb", buffering=0) as out:
    while not os.path.exists(sys.argv[3]):
        try:
            out.write(os.read(fd, 960))
        except BlockingIOError:
            pass
        time.sleep(0.01)
"""


class SlowListener:
    """Reads the speaker FIFO at about twice real time into a file, in a child process."""

    def __init__(self, fifo: Path, heard: Path) -> None:
        # Held open read-write here, so the device's open for writing never blocks.
        self.fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.heard = heard
        self.halt = heard.with_suffix(".halt")
        self.child = subprocess.Popen([sys.executable, "-c", LISTEN, fifo, heard, self.halt])

    def total(self) -> int:
        """Bytes heard so far."""
        return self.heard.stat().st_size if self.heard.exists() else 0

    def stop(self) -> bytes:
        """Stop listening; everything heard."""
        self.halt.touch()
        try:
            self.child.wait(5)
        finally:
            if self.child.poll() is None:
                self.child.kill()
                self.child.wait(5)
            os.close(self.fd)
        return self.heard.read_bytes()


async def test_flush_stops_the_reply_at_once_and_the_next_one_plays_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "speaker.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PLV_SPEAKER_OUT", str(fifo))
    interrupted, answer = reply(4.0, seed=3), reply(0.3, seed=4)
    listener = SlowListener(fifo, tmp_path / "heard.raw")
    try:
        settings = PlaybackSettings(device=SPEAKER_PCM, periods=4)
        async with asyncio.timeout(20), AlsaAudioSink(settings) as sink:
            for start in range(0, len(interrupted), CHUNK):
                sink.write(interrupted[start : start + CHUNK])
            # A quarter of a second heard; the listener is another process: poll its file.
            while listener.total() < OUTPUT_RATE // 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            sink.flush()
            heard_at_flush = listener.total()
            assert not sink.playing
            await play(sink, answer)
            grant = sink.grant
            assert grant is not None
            assert sink.stats.flushes == 1
            while answer[-CHUNK:] not in listener.heard.read_bytes():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        heard = listener.stop()
    cut = heard.find(answer[:CHUNK])
    assert cut > 0, "the answer after the flush never arrived"
    assert heard[:cut] == interrupted[:cut], "what played before the flush is the reply's start"
    assert heard[cut : cut + len(answer)] == answer
    # Past the flush, only what was already in the pipe and the device buffer could follow.
    in_flight = PIPE_BYTES + grant.buffer_frames * 2 + grant.period_frames * 2
    assert cut - heard_at_flush <= in_flight, (cut, heard_at_flush, in_flight)
    assert cut < len(interrupted) // 4
