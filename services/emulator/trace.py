"""A JSONL trace of every frame in and out of the stand-in, and of every rule violation.

Records carry the kind, size and monotonic time of a frame, never audio payloads.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TraceRecord = dict[str, Any]


class Trace:
    """Writes records to an optional JSONL file and keeps the newest ones in memory."""

    def __init__(self, path: Path | None = None, keep: int = 100_000) -> None:
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        self.records: deque[TraceRecord] = deque(maxlen=keep)
        self._written = threading.Condition()

    def write(self, event: str, **fields: Any) -> TraceRecord:
        """Append one record: ``event`` is ``in``, ``out``, ``violation``, ``close``, ..."""
        record: TraceRecord = {"t": time.monotonic(), "event": event, **fields}
        with self._written:
            self.records.append(record)
            self._written.notify_all()
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        return record

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block (from any thread but the stand-in's) until ``predicate`` holds after a write;
        False if ``timeout_s`` passed first."""
        with self._written:
            return self._written.wait_for(predicate, timeout_s)

    def select(self, event: str | None = None, **match: Any) -> list[TraceRecord]:
        """The in-memory records of ``event`` whose fields equal ``match``."""
        # A list copy is taken atomically, so the stand-in may keep writing from its thread.
        return [
            r
            for r in list(self.records)
            if (event is None or r["event"] == event)
            and all(r.get(k) == v for k, v in match.items())
        ]

    def close(self) -> None:
        """Close the file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_trace(path: Path) -> list[TraceRecord]:
    """Read a JSONL trace file back."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
