"""Speech and noise fixtures made on the spot with espeak-ng, and a way to feed them to ALSA.

A fixture is 16 kHz mono s16le with silence around the speech and, optionally, white noise at a
given signal-to-noise ratio. Its speech bounds come from the clean espeak-ng output (the first
and last 10 ms window within ``BOUND_DB`` of the loudest one), so they are known before any
noise is added.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from device.virtual_audio import speak

RATE = 16_000
WINDOW = RATE // 100  # 10 ms
BOUND_DB = -35.0  # a window this far below the loudest one is silence between words


@dataclass(frozen=True)
class Fixture:
    """Audio with known speech bounds in seconds (None for a fixture without speech)."""

    name: str
    pcm: bytes
    start_s: float | None
    end_s: float | None


def speech_bounds(samples: NDArray[np.float64]) -> tuple[float, float]:
    """First and last 10 ms window within ``BOUND_DB`` of the loudest, in seconds."""
    windows = len(samples) // WINDOW
    rms = np.sqrt(np.mean(samples[: windows * WINDOW].reshape(windows, WINDOW) ** 2, axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-9) / max(float(rms.max()), 1e-9))
    loud = np.flatnonzero(level > BOUND_DB)
    return float(loud[0] * WINDOW / RATE), float((loud[-1] + 1) * WINDOW / RATE)


def _pcm(samples: NDArray[np.float64]) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def utterance(
    text: str,
    voice: str,
    words_per_minute: int,
    *,
    lead_s: float = 0.5,
    tail_s: float = 1.5,
    snr_db: float | None = None,
    seed: int = 0,
) -> Fixture:
    """``text`` spoken between ``lead_s`` and ``tail_s`` of silence (or noise at ``snr_db``)."""
    speech = np.frombuffer(speak(text, voice, words_per_minute), dtype="<i2").astype(np.float64)
    start, end = speech_bounds(speech)
    lead = int(lead_s * RATE)
    signal = np.concatenate([np.zeros(lead), speech, np.zeros(int(tail_s * RATE))])
    name = f"{voice}@{words_per_minute}"
    if snr_db is not None:
        power = float(np.mean(speech[int(start * RATE) : int(end * RATE)] ** 2))
        rng = np.random.default_rng(seed)
        signal = signal + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(signal))
        name += f"+noise{snr_db:g}dB"
    return Fixture(name, _pcm(signal), lead_s + start, lead_s + end)


def noise(seconds: float, rms: float, *, brown: bool = False, seed: int = 0) -> Fixture:
    """White (or brown: integrated, rumbling) noise at ``rms``, with no speech in it."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, 1.0, int(seconds * RATE))
    if brown:
        samples = np.cumsum(samples)
        samples -= np.convolve(samples, np.ones(RATE // 50) / (RATE // 50), mode="same")
    samples *= rms / float(np.sqrt(np.mean(samples**2)))
    return Fixture(f"{'brown' if brown else 'white'} noise {rms:g} rms", _pcm(samples), None, None)


def pink_noise(seconds: float, rms: float, *, seed: int = 0) -> NDArray[np.float64]:
    """Room tone: noise with a 1/f spectrum from 50 Hz up (what a mic's high-pass leaves)."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(0.0, 1.0, n))
    hz = np.fft.rfftfreq(n, 1 / RATE)
    spectrum = np.where(hz >= 50, spectrum / np.sqrt(np.maximum(hz, 1.0)), 0)
    samples = np.fft.irfft(spectrum, n)
    return np.asarray(samples * rms / float(np.sqrt(np.mean(samples**2))), dtype=np.float64)


def tone(hz: float, seconds: float, rate: int, channels: int = 1, amplitude: float = 8000) -> bytes:
    """A sine at ``hz`` sampled at ``rate``, interleaved over ``channels``."""
    t = np.arange(int(seconds * rate)) / rate
    samples = np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2")
    return np.repeat(samples, channels).tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    """The strongest frequency of mono s16le ``pcm``, refined between FFT bins."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)  # parabolic interpolation of the peak
    return float((k + offset) * rate / len(samples))


@contextlib.contextmanager
def fed_fifo(fifo: Path, data: bytes, chunk: int) -> Iterator[None]:
    """Feed ``data`` into ``fifo`` as fast as the reader takes it, ``chunk`` bytes at a time.

    The FIFO is opened read-write first, so neither side's open blocks (pyalsaaudio opens a
    PCM holding the GIL). When ``data`` runs out the reader blocks instead of reading past an
    end, which an ALSA ``file`` PCM on a regular file would do, returning garbage.

    ``chunk`` must be the reader's period in bytes, at most ``select.PIPE_BUF``: the ``file``
    plugin takes one ``read()`` per period and keeps stale bytes where a read comes up short,
    so the pipe must only ever hold whole periods (writes up to PIPE_BUF are atomic).
    """
    if not 0 < chunk <= select.PIPE_BUF:
        raise ValueError(f"chunk must be 1..{select.PIPE_BUF} bytes, got {chunk}")
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    done = threading.Event()

    def feed() -> None:
        view = memoryview(data)
        while view and not done.is_set():
            try:
                view = view[os.write(fd, view[:chunk]) :]
            except BlockingIOError:
                done.wait(0.002)  # the pipe is full: the reader has not caught up

    feeder = threading.Thread(target=feed, name="fifo-feeder", daemon=True)
    feeder.start()
    try:
        yield
    finally:
        done.set()
        feeder.join(5)
        os.close(fd)
