"""``pi-live-voice devices``: the ALSA PCMs this machine offers, and what each accepts."""

from __future__ import annotations

import argparse
import subprocess
import sys

import alsaaudio

RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
PROBE_TIMEOUT_S = 3.0


def _probe(name: str, kind: int) -> str:
    """The rates, formats and channel counts ``name`` accepts, or why it cannot be opened."""
    try:
        pcm = alsaaudio.PCM(kind, alsaaudio.PCM_NONBLOCK, device=name)
    except alsaaudio.ALSAAudioError as exc:
        return f"cannot open: {exc}"
    try:
        rates = pcm.getrates()
        formats = sorted(pcm.getformats())
        channels = pcm.getchannels()
    except alsaaudio.ALSAAudioError as exc:
        return f"opened, but its parameters cannot be read: {exc}"
    finally:
        pcm.close()
    if isinstance(rates, tuple):
        low, high = rates
        rate_text = f"{low}-{high} Hz"
    else:
        rate_text = ", ".join(str(r) for r in rates if r in RATES) or str(rates)
    return f"rates {rate_text}; formats {', '.join(formats)}; channels {channels}"


def _probe_apart(name: str, kind: int) -> str:
    """:func:`_probe` in a child process: some plugins (jack, pulse) can hang on open."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "device.audio_devices", name, str(kind)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {PROBE_TIMEOUT_S:g} s (a plugin whose server is not running?)"
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1:][0]


def print_devices(args: argparse.Namespace) -> int:
    """List capture and playback PCMs with what each accepts; exit status 0."""
    for title, kind in (("capture", alsaaudio.PCM_CAPTURE), ("playback", alsaaudio.PCM_PLAYBACK)):
        print(f"{title} PCMs:", flush=True)
        for name in alsaaudio.pcms(kind):
            print(f"  {name}: {_probe_apart(name, kind)}", flush=True)
    return 0


if __name__ == "__main__":
    print(_probe(sys.argv[1], int(sys.argv[2])))
