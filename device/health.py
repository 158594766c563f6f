"""The periodic health line: every room's counters in one journal entry.

The counters are gathered by the caller (the daemon, which sees every room); this module only
names them, sums the ones that mean the same thing, and logs them on a schedule that a reload
can change at once. It imports nothing from ``services``: the session's counters come in
through :class:`LinkCounters`, by shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from device.audio import CaptureStats, PlaybackStats
from device.uplink import UplinkStats

log = logging.getLogger(__name__)

Fields = dict[str, int | float]


class LinkCounters(Protocol):
    """What the Live session counted (its ``stats``)."""

    @property
    def frames_sent(self) -> int:
        """Audio frames on the wire."""

    @property
    def frames_offline(self) -> int:
        """Audio frames lost because no connection was up."""

    @property
    def reconnects(self) -> int:
        """Connections after the first."""

    @property
    def tool_calls(self) -> int:
        """Tool calls the model made."""


def rss_bytes() -> int:
    """Resident set size now (Linux); 0 where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def health_fields(
    capture: CaptureStats,
    playback: PlaybackStats,
    uplink: UplinkStats,
    link: LinkCounters,
    *,
    gated_by_session: int,
    tokens_today: int,
    cost_today: float | None,
) -> Fields:
    """The health line's journal fields. A frame lost anywhere counts once in
    ``DROPPED_FRAMES``; one held back for a pending call, wherever, in ``GATED_FRAMES``;
    ``COST_TODAY`` only when prices are configured (``cost_today`` not None)."""
    return {
        "FRAMES_IN": capture.frames_in,
        "FRAMES_OUT": link.frames_sent,
        "DROPPED_FRAMES": capture.dropped + uplink.dropped + link.frames_offline,
        "GATED_FRAMES": capture.gated + gated_by_session + uplink.gated,
        "HELD_FRAMES": uplink.held,
        "XRUNS": capture.xruns + playback.xruns,
        "RECONNECTS": link.reconnects,
        "TOOL_CALLS": link.tool_calls,
        "RSS_MIB": round(rss_bytes() / 2**20, 1),
        "TOKENS_TODAY": tokens_today,
        **({} if cost_today is None else {"COST_TODAY": round(cost_today, 4)}),
    }


def health_text(status: str, fields: Fields) -> str:
    """The health line's message: the status, then each field in words."""
    words = ", ".join(f"{key.lower().replace('_', ' ')} {value}" for key, value in fields.items())
    return f"health: {status}; {words}"


class HealthReporter:
    """Logs a health line every ``interval_s``; :meth:`set_interval` applies at once."""

    def __init__(
        self,
        interval_s: float,
        fields: Callable[[], Fields],
        status: Callable[[], str],
        state: Callable[[], str],
    ) -> None:
        self.interval_s = interval_s
        self._fields = fields
        self._status = status
        self._state = state
        self._changed = asyncio.Event()

    def set_interval(self, interval_s: float) -> None:
        """Use ``interval_s`` from now on; the wait in progress starts over with it."""
        if interval_s != self.interval_s:
            self.interval_s = interval_s
            self._changed.set()

    def report(self) -> Fields:
        """Log one health line now; its fields."""
        fields = self._fields()
        log.info(
            "%s",
            health_text(self._status(), fields),
            extra={**fields, "LIVE_STATE": self._state()},
        )
        return fields

    async def run(self) -> None:
        """Report every interval until cancelled."""
        while True:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.interval_s)
            if not self._changed.is_set():
                self.report()
