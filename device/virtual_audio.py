"""A sound card made of files, for the demo and the tests of a device with no sound card.

Two ALSA PCMs built from the ``file`` plugin take their paths from the environment when they
are opened: ``plv_mic`` reads its input from ``PLV_MIC_IN`` — a FIFO fed by
:class:`FifoMic` makes it a microphone paced in real time — and ``plv_speaker`` writes what
is played to ``PLV_SPEAKER_OUT``. alsa-lib reads its configuration once per process, so
:func:`install_asoundrc` must run before the first PCM is opened.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import threading
import time
import wave
from collections import deque
from pathlib import Path

import numpy as np
import soxr

MIC_PCM = "plv_mic"
SPEAKER_PCM = "plv_speaker"
VIRTUAL_PCMS = """\
pcm.plv_mic {
    type file
    slave.pcm "null"
    file "/dev/null"
    infile { @func getenv vars [ PLV_MIC_IN ] default "/dev/zero" }
    format "raw"
}
pcm.plv_speaker {
    type file
    slave.pcm "null"
    file { @func getenv vars [ PLV_SPEAKER_OUT ] default "/dev/null" }
    format "raw"
}
"""


def install_asoundrc(config_home: Path, pcms: str = VIRTUAL_PCMS) -> None:
    """Write ``pcms`` as the user's ALSA config under ``config_home`` and point this
    process's alsa-lib at it."""
    (config_home / "alsa").mkdir(parents=True, exist_ok=True)
    (config_home / "alsa" / "asoundrc").write_text(pcms)
    os.environ["XDG_CONFIG_HOME"] = str(config_home)


def speak(text: str, voice: str = "en-us", words_per_minute: int = 160) -> bytes:
    """``text`` spoken by espeak-ng, as 16 kHz mono s16le: a user for the virtual mic."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=True,
    )
    with wave.open(io.BytesIO(out.stdout)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return np.asarray(soxr.resample(samples, rate, 16000), dtype="<i2").tobytes()


class FifoMic(threading.Thread):
    """Feeds a FIFO microphone at real-time pace: queued speech, silence in between."""

    def __init__(self, fifo: Path, rate: int = 16000, chunk_ms: int = 20) -> None:
        super().__init__(name="mic-feeder", daemon=True)
        self.fifo = fifo
        self.chunk = rate * chunk_ms // 1000 * 2
        self.period = chunk_ms / 1000
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self._fd = -1

    def say(self, pcm: bytes) -> None:
        """Queue 16 kHz mono s16le audio to be 'spoken' into the mic after what is queued."""
        with self._lock:
            self.idle.clear()
            self._queue.extend(pcm[i : i + self.chunk] for i in range(0, len(pcm), self.chunk))

    def stop(self) -> None:
        """Stop feeding and close the FIFO (the reader then sees end of file)."""
        self._halt.set()
        self.join(5)

    def start(self) -> None:
        """Open the FIFO, then start feeding it.

        Opened read-write, the FIFO has a writer before the capture side opens it, so that
        open does not block (pyalsaaudio opens PCMs holding the GIL: a blocked open would
        stall every thread of the process, this one included).
        """
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        super().start()

    def run(self) -> None:
        fd = self._fd
        silence = b"\x00" * self.chunk
        next_at = time.monotonic()
        try:
            while not self._halt.is_set():
                with self._lock:
                    chunk = self._queue.popleft() if self._queue else None
                    if not self._queue:
                        self.idle.set()
                data = chunk if chunk is not None else silence
                with contextlib.suppress(BlockingIOError):
                    # A full pipe means nobody is capturing: like a real mic, audio is lost.
                    os.write(fd, data.ljust(self.chunk, b"\x00"))
                next_at += self.period
                self._halt.wait(max(0.0, next_at - time.monotonic()))
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
