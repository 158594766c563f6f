"""The microphone inside a booted test container: a FIFO fed at real-time pace.

Run there with the installed venv's Python as a transient service: it feeds silence into
``FIFO`` (the container's ALSA ``default`` capture reads it) and speaks ``SPEECH`` (16 kHz
mono s16le) into it on every SIGUSR1, until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from device.virtual_audio import FifoMic

FIFO = Path("/run/plv-mic/mic.fifo")
SPEECH = Path("/root/plv/speech.raw")
# The container is powered off long before; a forgotten feeder still ends.
LIFETIME_S = 3600


def main() -> None:
    """Feed the FIFO until SIGTERM (or LIFETIME_S)."""
    FIFO.parent.mkdir(mode=0o755, exist_ok=True)
    if not FIFO.exists():
        os.mkfifo(FIFO)
    # The service's throw-away user reads it.
    FIFO.chmod(0o666)
    mic = FifoMic(FIFO)
    mic.start()
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: mic.say(SPEECH.read_bytes()))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(LIFETIME_S)
    mic.stop()


if __name__ == "__main__":
    main()
