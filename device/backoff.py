"""Retry back-off for audio devices that are missing or fail: a pure policy, no clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off: ``initial_s``, then times ``factor`` per failure, capped at ``max_s``.

    No jitter: a device on the local bus has no herd of other clients to spread out.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0:
            raise ValueError(f"initial_s must be > 0, got {self.initial_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= initial_s ({self.initial_s})")

    def delays(self) -> Iterator[float]:
        """Endless delays in seconds, one per consecutive failure; start a new one on success."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)
