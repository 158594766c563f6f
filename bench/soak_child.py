"""The soak's daemon: ``python -m bench.soak_child CONFIG OUT MINUTES WARMUP_MIN EVERY_S FRAMES``.

``tracemalloc`` starts (keeping ``FRAMES`` frames; 0 leaves it off, to see RSS untouched by
its tables) before the daemon is imported; then ``pi-live-voice run --config
CONFIG`` runs exactly as installed, on this thread. A thread of its own writes one checkpoint
line to ``OUT/checkpoints.jsonl`` every ``EVERY_S`` seconds (RSS, traced memory and
tracemalloc's own overhead), dumps ``warm.snap`` once ``WARMUP_MIN`` minutes have passed and
``end.snap`` after ``MINUTES``, then writes a line ``{"done": true}``; the parent then stops the
daemon with SIGTERM.

gpiozero's mock pins record every change they see (a real pin keeps no history): the thread
clears that record at each checkpoint and counts what it dropped, so the soak measures the
daemon, not the test double.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _clear_mock_history() -> int:
    """Drop the mock pins' record of changes; the number of entries dropped."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    factory = Device.pin_factory
    if not isinstance(factory, MockFactory):
        return 0
    dropped = 0
    for pin in list(factory.pins.values()):
        dropped += len(pin.states) - 1
        pin.clear_states()
    return dropped


def _dump(path: Path) -> None:
    if tracemalloc.is_tracing():
        # Cyclic garbage waiting for the oldest generation's collection is no growth.
        gc.collect()
        tracemalloc.take_snapshot().dump(str(path))


def _checkpoint(started: float, mock_dropped: int) -> dict[str, Any]:
    traced, _ = tracemalloc.get_traced_memory()
    rss = _rss_mib()
    overhead = tracemalloc.get_tracemalloc_memory() / 2**20
    return {
        "minutes": round((time.monotonic() - started) / 60, 2),
        "rss_mib": round(rss, 2),
        # What the daemon would hold untraced: tracemalloc's own tables grow with the heap.
        "rss_untraced_mib": round(rss - overhead, 2),
        "traced_mib": round(traced / 2**20, 2),
        "tracemalloc_overhead_mib": round(overhead, 2),
        "gc_objects": len(gc.get_objects()),
        "mock_pin_changes_dropped": mock_dropped,
    }


def _watch(out: Path, minutes: float, warmup_min: float, every_s: float) -> None:
    started = time.monotonic()
    warm_dumped = False
    with (out / "checkpoints.jsonl").open("a", encoding="utf-8") as lines:

        def write(record: dict[str, Any]) -> None:
            lines.write(json.dumps(record) + "\n")
            lines.flush()

        for n in range(1, int(minutes * 60 / every_s) + 2):
            time.sleep(max(0.0, started + n * every_s - time.monotonic()))
            elapsed_min = (time.monotonic() - started) / 60
            dropped = _clear_mock_history()
            if not warm_dumped and elapsed_min >= warmup_min:
                # The dump comes first, so whatever it leaves resident is in the baseline.
                _dump(out / "warm.snap")
                warm_dumped = True
                write({**_checkpoint(started, dropped), "warm": True})
                continue
            if elapsed_min >= minutes:
                write({**_checkpoint(started, dropped), "end": True})
                _dump(out / "end.snap")
                write({"done": True})
                return
            write(_checkpoint(started, dropped))


def main(argv: list[str] | None = None) -> int:
    """Trace the daemon for the soak; the daemon's own exit status."""
    args = sys.argv[1:] if argv is None else argv
    config, out = Path(args[0]), Path(args[1])
    minutes, warmup_min, every_s = float(args[2]), float(args[3]), float(args[4])
    frames = int(args[5])
    if frames > 0:
        tracemalloc.start(frames)
    # Imported (and traced) before the clock starts: under tracemalloc the import is slow.
    import device.daemon  # noqa: F401
    from device.cli import main as cli_main

    threading.Thread(
        target=_watch, args=(out, minutes, warmup_min, every_s), name="soak-watch", daemon=True
    ).start()
    return cli_main(["run", "--config", str(config)])


if __name__ == "__main__":
    sys.exit(main())
