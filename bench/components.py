"""Where the CPU goes: each stage of the audio path alone, in CPU ms per second of audio.

Each stage runs on this thread and is timed with ``time.thread_time()``, so the stand-in's
thread (for the two session stages) is not counted:

* ``vad``: webrtcvad endpointing of 16 kHz frames (speech and silence);
* ``capture_48k``: what the capture thread and the VAD do for a 48 kHz mic: mono, soxr
  down to 16 kHz, re-chunking into 20 ms frames, endpointing;
* ``send``: :meth:`LiveSession.send_audio` of 20 ms frames through the real SDK and TLS;
* ``receive``: the session receiving a reply streamed flat out (SDK parsing, base64, TLS);
* ``playback_48k``: soxr from 24 kHz up to a 48 kHz speaker;
* ``poll_50hz``: for scale, an asyncio task that wakes every 20 ms and does nothing, in CPU
  ms per second: the floor under anything that handles each 20 ms frame on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.standin import API_KEY, standin
from device.frames import Rechunker
from device.resample import StreamResampler, from_mono, to_mono
from device.vad import Endpointer
from device.virtual_audio import speak
from services.emulator.speech import OUTPUT_RATE, synthesize
from services.live.session import LiveSession, SessionEvents
from services.live.settings import LiveSettings
from services.tools.registry import ToolRegistry

FRAME_BYTES = 640
SILENCE_S = 1.0
POLL_S = 3.0


def _per_second(work: Callable[[], None], audio_s: float) -> float:
    start = time.thread_time()
    work()
    return round(1000 * (time.thread_time() - start) / audio_s, 2)


def _frames(pcm: bytes) -> list[bytes]:
    whole = len(pcm) - len(pcm) % FRAME_BYTES
    return [pcm[i : i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]


async def _poll_cost(seconds: float) -> float:
    async def poll() -> None:
        while True:  # noqa: ASYNC110 - this empty poll is what is measured
            await asyncio.sleep(0.02)

    task = asyncio.create_task(poll(), name="idle-poll")
    start, wall = time.thread_time(), time.monotonic()
    await asyncio.sleep(seconds)
    used, wall = time.thread_time() - start, time.monotonic() - wall
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return round(1000 * used / wall, 2)


class _TurnDone(SessionEvents):
    def __init__(self) -> None:
        self.done = asyncio.Event()

    def on_turn_complete(self) -> None:
        self.done.set()


async def _session_stages(workdir: Path, frames: list[bytes], reply: str) -> tuple[float, float]:
    async with standin({"turns": [{"reply": reply}]}, workdir, pace=0.0) as em:
        events = _TurnDone()
        settings = LiveSettings(model="bench", base_url=em.base_url, ca_file=em.settings.cert_out)
        session = LiveSession(settings, ToolRegistry(), API_KEY, events)
        task = asyncio.create_task(session.run(), name="components-session")
        try:
            async with asyncio.timeout(60):
                await session.wait_connected()
                await session.set_activity(True)
                start = time.thread_time()
                for frame in frames:
                    await session.send_audio(frame)
                send = time.thread_time() - start
                start = time.thread_time()
                await session.set_activity(False)
                await events.done.wait()
                receive = time.thread_time() - start
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    audio_s = len(frames) * 0.02
    reply_s = len(synthesize(reply)) / 2 / OUTPUT_RATE
    return round(1000 * send / audio_s, 2), round(1000 * receive / reply_s, 2)


async def measure(workdir: Path, seconds: float) -> dict[str, float]:
    """CPU ms per second of audio of each stage, over about ``seconds`` of audio."""
    speech = await asyncio.to_thread(speak, "Turn on the kitchen light, please.")
    silence = b"\x00" * int(32000 * SILENCE_S)
    repeat = max(1, round(seconds / (len(speech + silence) / 32000)))
    pcm = (speech + silence) * repeat
    audio_s = len(pcm) / 32000
    frames = _frames(pcm)
    samples = np.frombuffer(pcm, dtype="<i2")
    at_48k = np.asarray(np.repeat(samples, 3), dtype=np.int16).tobytes()  # a crude 48 kHz mic

    def vad() -> None:
        endpointer = Endpointer()
        for frame in frames:
            endpointer.process(frame)

    def capture_48k() -> None:
        resampler = StreamResampler(48000, 16000)
        chunker = Rechunker(FRAME_BYTES)
        endpointer = Endpointer()
        period = 48000 // 50 * 2
        for i in range(0, len(at_48k), period):
            mono = resampler.process(to_mono(at_48k[i : i + period], 1))
            for frame in chunker.push(mono.astype("<i2").tobytes()):
                endpointer.process(frame)

    reply_pcm = synthesize("The kitchen light is on, and the hall light is off.")
    reply_s = len(reply_pcm) / 2 / OUTPUT_RATE

    def playback_48k() -> None:
        resampler = StreamResampler(OUTPUT_RATE, 48000)
        chunk = OUTPUT_RATE // 25 * 2  # the stand-in's 40 ms pieces
        for _ in range(max(1, round(seconds / reply_s))):
            for i in range(0, len(reply_pcm), chunk):
                from_mono(resampler.process(np.frombuffer(reply_pcm[i : i + chunk], "<i2")), 1)

    send, receive = await _session_stages(
        workdir, frames, "The kitchen light is on, and the hall light is off. " * 4
    )
    plays = max(1, round(seconds / reply_s))
    poll = await _poll_cost(min(max(seconds / 10, 1.0), POLL_S))
    return {
        "vad": _per_second(vad, audio_s),
        "capture_48k": _per_second(capture_48k, audio_s),
        "send": send,
        "receive": receive,
        "playback_48k": _per_second(playback_48k, reply_s * plays),
        "poll_50hz": poll,
    }
