"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, bounded.

    The wait after attempt ``n`` fails is drawn uniformly from
    ``[0, min(maximum, base * factor ** (n - 1))]`` when ``jitter`` is on (spreading retries of
    a burst of failures), and is exactly that bound otherwise.

    Attributes:
        base: the bound after the first failure, in seconds.
        factor: how much the bound grows per failed attempt.
        maximum: the largest wait, in seconds.
        jitter: draw the wait at random below the bound.
    """

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.maximum < 0:
            raise ValueError(f"Backoff needs base >= 0, factor >= 1 and maximum >= 0, got {self!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based) failed."""
        exponent = max(0, attempt - 1)
        # Cap the exponent so huge attempt counts cannot overflow the float.
        bound = min(self.maximum, self.base * self.factor ** min(exponent, 64))
        return random.uniform(0, bound) if self.jitter else bound
