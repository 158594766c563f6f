"""Capture through a real ALSA PCM (the ``file`` plugin reading a FIFO) into the VAD.

Speech fixtures in three voices and speeds, clean and at 15 dB SNR, must come out as one
utterance each whose bounds are within 150 ms of the fixture's; noise must give none; a 44.1
or 48 kHz stereo device must be resampled to 16 kHz mono without shifting a tone; a missing
device is retried until it appears.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from device.audio import INPUT_RATE, CaptureSettings
from device.backoff import Backoff
from device.capture import AlsaAudioSource
from device.vad import Endpointer, SpeechDiscarded, SpeechEnded, SpeechStarted, VadSettings
from device.virtual_audio import MIC_PCM
from tests.speech_fixtures import Fixture, dominant_hz, fed_fifo, noise, tone, utterance

FRAME_MS = 20
TOLERANCE_S = 0.150
VOICES = [("en-us", 150), ("en-gb", 120), ("en-us+f3", 190)]
TEXT = "turn on the kitchen light"


async def capture(
    data: bytes,
    frames: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    device_rate: int | None = None,
    channels: int = 1,
    period_ms: int = 20,
) -> list[bytes]:
    """The first ``frames`` 16 kHz frames the capture pipeline makes of ``data`` played into
    ``plv_mic``; one second of silence follows ``data`` so the reader is never left waiting."""
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PLV_MIC_IN", str(fifo))
    capture_settings = CaptureSettings(
        device=MIC_PCM,
        device_rate=device_rate,
        channels=channels,
        period_ms=period_ms,
        frame_ms=FRAME_MS,
        queue_frames=frames + 100,
        max_speed=None,  # the fixtures are fed as fast as they are read
    )
    rate = capture_settings.device_rate or INPUT_RATE
    frame_size = 2 * capture_settings.channels
    padding = b"\x00" * (rate * frame_size)
    period = rate * capture_settings.period_ms // 1000 * frame_size
    got: list[bytes] = []
    with fed_fifo(fifo, data + padding, period):
        async with asyncio.timeout(20), AlsaAudioSource(capture_settings) as source:
            async for frame in source:
                got.append(frame)
                if len(got) == frames:
                    break
            assert source.stats.dropped == 0
    return got


def utterances(frames: list[bytes]) -> tuple[list[tuple[float, float]], list[SpeechStarted]]:
    """(start, end) in seconds of each utterance the endpointer finds, and its starts."""
    endpointer = Endpointer(VadSettings(frame_ms=FRAME_MS))
    found: list[tuple[float, float]] = []
    starts: list[SpeechStarted] = []
    onset = 0
    for frame in frames:
        event = endpointer.process(frame)
        if isinstance(event, SpeechStarted):
            starts.append(event)
            onset = event.onset_frame
        elif isinstance(event, SpeechEnded):
            found.append((onset * FRAME_MS / 1000, event.end_frame * FRAME_MS / 1000))
    return found, starts


def fixture_frames(fixture: Fixture) -> int:
    return len(fixture.pcm) // (2 * INPUT_RATE * FRAME_MS // 1000)


@pytest.mark.parametrize("snr_db", [None, 15.0], ids=["clean", "15dB"])
@pytest.mark.parametrize(("voice", "wpm"), VOICES, ids=[f"{v}@{s}" for v, s in VOICES])
async def test_speech_fixture_is_one_utterance_within_150_ms(
    voice: str,
    wpm: int,
    snr_db: float | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixture = utterance(TEXT, voice, wpm, snr_db=snr_db, seed=wpm)
    assert fixture.start_s is not None
    assert fixture.end_s is not None
    frames = await capture(fixture.pcm, fixture_frames(fixture), tmp_path, monkeypatch)
    # The capture path must hand the VAD the fixture itself, sample for sample.
    assert b"".join(frames) == fixture.pcm[: len(frames) * len(frames[0])]

    found, starts = utterances(frames)

    assert len(found) == 1, f"{fixture.name}: utterances {found}"
    (start, end) = found[0]
    assert abs(start - fixture.start_s) <= TOLERANCE_S, (fixture.name, start, fixture.start_s)
    assert abs(end - fixture.end_s) <= TOLERANCE_S, (fixture.name, end, fixture.end_s)
    # The pre-roll reaches back before the onset, so the first syllable is sent whole.
    first = starts[0]
    assert first.at_frame - first.onset_frame + 1 <= len(first.preroll)


@pytest.mark.parametrize(
    "fixture",
    [
        noise(4.0, 300.0, seed=1),
        noise(4.0, 1500.0, seed=2),
        noise(4.0, 800.0, brown=True, seed=3),
    ],
    ids=lambda f: f.name,
)
async def test_noise_is_no_utterance(
    fixture: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = await capture(fixture.pcm, fixture_frames(fixture), tmp_path, monkeypatch)
    endpointer = Endpointer(VadSettings(frame_ms=FRAME_MS))
    events = [endpointer.process(f) for f in frames]
    assert not [e for e in events if isinstance(e, SpeechStarted)]
    # The VAD may still weigh a blip while it adapts to the noise; it must drop it.
    assert all(isinstance(e, SpeechDiscarded) for e in events if e is not None)


@pytest.mark.parametrize("device_rate", [44_100, 48_000])
async def test_device_rate_is_resampled_keeping_the_tone(
    device_rate: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seconds = 2.0
    data = tone(1000.0, seconds, device_rate, channels=2)
    # Leave out the resampler's start-up and the last frames its delay holds back.
    frames = await capture(
        data,
        int((seconds - 0.1) * 1000 / FRAME_MS),
        tmp_path,
        monkeypatch,
        device_rate=device_rate,
        channels=2,
        period_ms=21,  # a period that is no whole number of 20 ms frames
    )
    pcm = b"".join(frames)
    assert all(len(f) == 2 * INPUT_RATE * FRAME_MS // 1000 for f in frames)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(samples) == len(frames) * INPUT_RATE * FRAME_MS // 1000
    assert dominant_hz(pcm[INPUT_RATE // 5 :], INPUT_RATE) == pytest.approx(1000.0, rel=0.01)
    # The level survives too: a resampler that mangled the signal would lose power.
    rms = float(np.sqrt(np.mean(samples[INPUT_RATE // 5 :].astype(np.float64) ** 2)))
    assert rms == pytest.approx(8000 / np.sqrt(2), rel=0.05)


async def test_missing_device_is_retried_until_it_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="device.capture")
    fifo = tmp_path / "late.fifo"
    monkeypatch.setenv("PLV_MIC_IN", str(fifo))  # not there yet: the PCM cannot open
    settings = CaptureSettings(
        device=MIC_PCM, queue_frames=200, retry=Backoff(initial_s=0.05, max_s=0.2)
    )
    speech = tone(440.0, 1.0, INPUT_RATE)
    async with asyncio.timeout(20), AlsaAudioSource(settings) as source:
        assert source.grant is None
        assert not source.stats.device_open  # what the watchdog takes for "retrying"
        # The source keeps trying while the rest of the program runs.
        async with asyncio.timeout(5):
            while len(caplog.records) < 2:  # noqa: ASYNC110 - log records have no event
                await asyncio.sleep(0.05)
        message = caplog.records[0].getMessage()
        assert f"{MIC_PCM!r} cannot be opened" in message
        assert "No such file or directory" in message
        # Made elsewhere and opened by its writer first, then moved into place: the reader's
        # open must never block (pyalsaaudio holds the GIL while it opens).
        os.mkfifo(tmp_path / "staging.fifo")
        with fed_fifo(tmp_path / "staging.fifo", speech + b"\x00" * 64_000, 640):
            (tmp_path / "staging.fifo").rename(fifo)
            first = await anext(source)
            assert source.grant is not None
            assert source.grant.rate == INPUT_RATE
            assert source.stats.device_open
            assert first == speech[: len(first)]
