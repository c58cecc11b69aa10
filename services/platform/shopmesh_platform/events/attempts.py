"""Attempt accounting shared by the relay and the consumers: how many tries a
failing event gets and how long to wait before the next one.

Pure and small on purpose (unit-tested): exponential backoff from
`initial_delay`, doubling, capped at `max_delay`; `max_attempts` tries in all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_delay: float = 0.2
    max_delay: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay or self.multiplier < 1:
            raise ValueError("need 0 <= initial_delay <= max_delay and multiplier >= 1")

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` tries have failed and no more are allowed."""
        return attempts >= self.max_attempts

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failure before trying again."""
        if attempts < 1:
            return 0.0
        return float(min(self.initial_delay * self.multiplier ** (attempts - 1), self.max_delay))
