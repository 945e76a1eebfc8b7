"""The store protocol: a small key/value store for results, unique-job keys and cron slots.

A store keeps byte values under string keys, each with an optional time to live. Stores are
plugins like brokers: ``[project.entry-points."chute.stores"]`` maps a URL scheme to a callable
that takes the URL. The conformance suite for stores is :class:`chute.testing.StoreConformance`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """A key/value store with expiry. Use it as an async context manager.

    Every operation on one key is atomic with respect to every other, across processes: that
    is what makes unique jobs and cron slots race-free. A key whose time to live has passed
    behaves exactly as a key that was never set.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any value; ``ttl`` in seconds, or forever."""
        ...

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; ``True`` if this call stored it.

        Of any number of concurrent ``add`` calls for one absent key, exactly one wins.
        """
        ...

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or ``None``."""
        ...

    async def delete(self, key: str, *, value: bytes | None = None) -> bool:
        """Remove ``key``; with ``value``, only if it currently holds exactly that value.

        Returns whether a key was removed. The conditional form is atomic: it never removes a
        value another process stored in between.
        """
        ...

    async def wait(self, key: str, timeout: float) -> bytes | None:
        """Wait until ``key`` has a value and return it, or ``None`` after ``timeout`` seconds.

        Stores with change notifications use them; others poll.
        """
        ...
