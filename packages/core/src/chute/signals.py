"""Flow-control signals a task may raise. They are not errors."""

from __future__ import annotations

__all__ = ["Retry"]


class Retry(Exception):
    """Raise in a task to ask for another attempt.

    The attempt counts against ``max_attempts`` like a failure, but is logged as a requested
    retry rather than an error.

    Args:
        delay: seconds before the next attempt; ``None`` for the task's backoff.
        reason: recorded in the log, and as the error if attempts run out.
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
