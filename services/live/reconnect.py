"""When to reconnect: jittered exponential back-off, and a cap for hopeless causes.

Pure: the random source is injected, and time is the caller's business (it sleeps for the
delay this returns), so tests drive the policy with a fixed seed and a fake clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from services.live.diagnostics import Action


@dataclass(frozen=True)
class BackoffSettings:
    """Back-off shape. ``jitter`` is the fraction of each delay that is randomised."""

    initial_s: float = 0.2
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.5
    fatal_attempts: int = 3
    # A connection that lived this long counts as healthy: the back-off starts over.
    healthy_after_s: float = 30.0


@dataclass
class ReconnectPolicy:
    """Counts consecutive failures and says how long to wait before the next attempt."""

    settings: BackoffSettings = field(default_factory=BackoffSettings)
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    fatal_count: int = 0

    def connected_for(self, seconds: float) -> None:
        """Report how long the last connection lived; a healthy one resets the count."""
        if seconds >= self.settings.healthy_after_s:
            self.attempt = 0
            self.fatal_count = 0

    def next_delay(self, action: Action) -> float | None:
        """Seconds to wait before reconnecting, or None to give up (fatal causes, capped)."""
        if action is Action.STOP:
            return None
        if action is Action.FATAL:
            self.fatal_count += 1
            if self.fatal_count >= self.settings.fatal_attempts:
                return None
        self.attempt += 1
        s = self.settings
        base = min(s.max_s, s.initial_s * s.factor ** (self.attempt - 1))
        return base * (1 - s.jitter * self.rng.random())
