"""What an adapter provides: a producer (sync or async methods) and a blocking worker.

The harness calls, in a producer process: ``open()``, then ``send()`` or ``send_batch()`` as
many times as the workload says, then ``close()``; each may be a plain method or a coroutine.
In a worker process it calls ``work(settings)``, which runs the project's worker until the
harness kills the process (or returns, for a worker that stops by itself).

Three tasks exist in every system, with the same bodies (see ``harness.probe``):

- ``noop(i)``: count a completion;
- ``sleep(i)``: wait 10 ms (``await asyncio.sleep`` in async systems, ``time.sleep`` in a
  thread in sync ones), then count;
- ``stamp(i, sent)``: record ``now - sent`` as the latency, then count.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SLEEP", "Adapter", "Unsupported"]

SLEEP = 0.010


class Unsupported(Exception):
    """The project has no such feature (a batch API, delayed tasks, in-process concurrency)."""


class Adapter:
    """Base of every adapter.

    Args:
        url: the server URL (or a file path for SQLite, nothing for the ceilings).
        queue: the queue name to use.
        options: the system's options from the table.
    """

    def __init__(self, url: str, queue: str, options: dict[str, Any]) -> None:
        self.url = url
        self.queue = queue
        self.options = options

    def open(self) -> Any:
        """Connect the producer."""

    def close(self) -> Any:
        """Disconnect the producer."""

    def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> Any:
        """Enqueue one task with one call of the project's API."""
        raise NotImplementedError

    def send_batch(self, task: str, calls: list[tuple[Any, ...]], delay: float | None) -> Any:
        """Enqueue ``calls`` with the project's batch API.

        Raises:
            Unsupported: the project has none.
        """
        raise Unsupported("no batch enqueue API")

    def work(self, settings: dict[str, Any]) -> None:
        """Run a worker in this process with the project's defaults overridden by ``settings``."""
        raise NotImplementedError
