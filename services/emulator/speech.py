"""The stand-in model's voice: replies rendered as 24 kHz mono s16le PCM.

espeak-ng speaks the reply when it is installed, so the demo's answer is audible; otherwise a
soft tone burst per word keeps the timing of speech without the words.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import shutil
import subprocess
import wave

import numpy as np
import soxr

OUTPUT_RATE = 24000
log = logging.getLogger(__name__)


def _tone_speech(text: str) -> bytes:
    words = max(1, len(text.split()))
    word = int(0.25 * OUTPUT_RATE)
    gap = int(0.08 * OUTPUT_RATE)
    t = np.arange(word) / OUTPUT_RATE
    envelope = np.sin(math.pi * np.arange(word) / word)
    burst = (3000 * envelope * np.sin(2 * math.pi * 220 * t)).astype("<i2")
    silence = np.zeros(gap, dtype="<i2")
    return b"".join(burst.tobytes() + silence.tobytes() for _ in range(words))


def _espeak(text: str, exe: str) -> bytes | None:
    try:
        done = subprocess.run(
            [exe, "-v", "en-us", "-s", "165", "--stdout", text],
            capture_output=True,
            check=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("espeak-ng failed (%s); replying with tones", exc)
        return None
    with wave.open(io.BytesIO(done.stdout)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    resampled = soxr.resample(samples, rate, OUTPUT_RATE)
    return np.asarray(resampled, dtype="<i2").tobytes()


@functools.lru_cache(maxsize=64)
def synthesize(text: str) -> bytes:
    """Return ``text`` spoken as 24 kHz mono s16le PCM (cached: scenarios repeat replies)."""
    if not text.strip():
        return b""
    exe = shutil.which("espeak-ng")
    pcm = _espeak(text, exe) if exe else None
    return pcm if pcm is not None else _tone_speech(text)
