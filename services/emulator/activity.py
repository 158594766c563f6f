"""The stand-in's automatic activity detection: an energy VAD over an adaptive noise floor.

Pure: audio levels and durations in, ``"start"``/``"end"`` out. A chunk is voiced when its RMS
reaches both ``min_rms`` and ``margin_db`` above the room's floor, a low percentile of the chunk
levels of the last ``window_ms``. Until the window has filled, the part not heard yet counts as
digital silence, so speech from the first chunk on is heard at once, while steady room tone
becomes the floor once it fills most of the window. The real service's detector is a model whose
workings are not public; what this keeps from it is that steady room tone is not speech.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Literal

Change = Literal["start", "end"]


@dataclass(frozen=True)
class VadSettings:
    """Thresholds of the stand-in's detector (scenario keys of the same names)."""

    min_rms: float = 500.0
    margin_db: float = 6.0
    window_ms: float = 3000.0
    start_ms: float = 60.0
    hangover_ms: float = 400.0


class EnergyVad:
    """Voiced and silent stretches of one connection's audio (see the module docstring)."""

    PERCENTILE = 10.0

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._ratio = 10 ** (settings.margin_db / 20)
        self._chunks: deque[tuple[float, float]] = deque()  # (rms, ms), oldest first
        self._sorted: list[tuple[float, float]] = []
        self._heard_ms = 0.0
        self._voiced_ms = 0.0
        self._silence_ms = 0.0

    @property
    def floor_rms(self) -> float:
        """The room's noise floor now (0 until room tone fills most of the window)."""
        unheard = max(0.0, self.settings.window_ms - self._heard_ms)
        rank = self.PERCENTILE / 100 * self.settings.window_ms - unheard
        if rank < 0:
            return 0.0
        for rms, ms in self._sorted:
            rank -= ms
            if rank < 0:
                return rms
        return self._sorted[-1][0] if self._sorted else 0.0

    def threshold(self) -> float:
        """The RMS a chunk needs now to count as voiced."""
        return max(self.settings.min_rms, self.floor_rms * self._ratio)

    def feed(self, rms: float, ms: float, speaking: bool) -> Change | None:
        """Judge a chunk of ``ms`` milliseconds; ``speaking`` is what the service believes now.

        Returns ``"start"`` once ``start_ms`` of voiced audio ran on, ``"end"`` once
        ``hangover_ms`` of silence followed speech."""
        voiced = rms >= self.threshold()
        self._learn(rms, ms)
        if voiced:
            self._voiced_ms += ms
            self._silence_ms = 0.0
            if not speaking and self._voiced_ms >= self.settings.start_ms:
                return "start"
            return None
        self._voiced_ms = 0.0
        self._silence_ms += ms
        if speaking and self._silence_ms >= self.settings.hangover_ms:
            return "end"
        return None

    def speech_ended(self) -> None:
        """The client ended the speech itself (``audioStreamEnd``): count silence afresh."""
        self._voiced_ms = 0.0
        self._silence_ms = 0.0

    def _learn(self, rms: float, ms: float) -> None:
        self._chunks.append((rms, ms))
        bisect.insort(self._sorted, (rms, ms))
        self._heard_ms += ms
        while self._chunks and self._heard_ms - self._chunks[0][1] >= self.settings.window_ms:
            old = self._chunks.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._heard_ms -= old[1]
