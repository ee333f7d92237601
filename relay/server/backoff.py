"""Relay's retry backoff: 0, then 1 s growing by 1.5x up to a maximum."""

from __future__ import annotations

INITIAL_INTERVAL = 1.0
MULTIPLIER = 1.5


class RetryBackoff:
    """Exponential backoff whose first step is immediate, as Relay's ``RetryBackoff``."""

    __slots__ = ("_next", "attempt", "max_interval")

    def __init__(self, max_interval: float) -> None:
        self.max_interval = max_interval
        self.attempt = 0
        self._next = INITIAL_INTERVAL

    def reset(self) -> None:
        """Back to the initial state: the next backoff is 0."""
        self.attempt = 0
        self._next = INITIAL_INTERVAL

    @property
    def started(self) -> bool:
        """Whether a backoff is running (at least one attempt was made)."""
        return self.attempt > 0

    def next_backoff(self) -> float:
        """Seconds to wait before the next attempt."""
        self.attempt += 1
        if self.attempt == 1:
            return 0.0
        delay = min(self._next, self.max_interval)
        self._next = self._next * MULTIPLIER
        return delay
