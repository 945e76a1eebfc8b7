"""The broker protocol: what a broker promises, and nothing about tasks.

A broker moves opaque byte strings between named queues. Retries, backoff, serialization,
dead-lettering and task names all live in chute's core; a broker only has to keep the promises
written in the docstrings below. The conformance suite in :mod:`chute.testing` checks each
promise, one test per promise, for every ack mode a broker claims.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = ["Ack", "Broker", "Capabilities", "Delivery", "Outgoing", "QueueStats", "dead_queue"]


class Ack(enum.Enum):
    """When a message leaves the broker for good."""

    ON_RECEIPT = "receipt"
    """Push/pop: gone from the broker once handed to a consumer. At-most-once: a consumer that
    crashes loses what it held, and never more than that."""

    ON_COMPLETION = "completion"
    """Leased until acked. A lease that lapses (consumer killed, network cut) puts the message
    back for another consumer with ``attempt`` raised. At-least-once."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do. Core and the conformance suite read it; nothing else is assumed.

    Attributes:
        acks: the ack modes the broker can run.
        max_delay: the longest delay, in seconds, the broker holds natively. ``None`` means
            unbounded, ``0`` means no native delays. Core splits longer delays itself.
        max_body: the largest body in bytes the broker accepts; ``None`` for no practical limit.
        ordered: a single consumer receives ready messages in publish order.
        persistent: a message published while no consumer listens is kept until consumed.
        shared: several processes (on this machine or others) can use the same queues.
            ``False`` for a broker that lives inside one process.
        lease_expiry: in ``ON_COMPLETION`` mode a lease lapses by time alone, while the
            consumer stays connected. ``False`` for brokers that only redeliver when the
            consumer's connection is lost (its messages then come back at once).
        max_lease: the longest a delivery can stay leased from its receipt, extensions
            included, in seconds (SQS: 12 hours); ``None`` for no limit. The worker refuses
            to start a task whose timeout is longer.
    """

    acks: frozenset[Ack]
    max_delay: float | None = None
    max_body: int | None = None
    ordered: bool = False
    persistent: bool = True
    shared: bool = True
    lease_expiry: bool = True
    max_lease: float | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish.

    Attributes:
        body: the bytes to deliver, exactly.
        delay: seconds before the message may be delivered. Never more than the broker's
            ``max_delay``: core splits longer delays.
        key: an idempotency key, for brokers that deduplicate natively; others ignore it.
    """

    body: bytes
    delay: float = 0.0
    key: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of one queue. Counts may be approximate on distributed brokers.

    Attributes:
        ready: messages deliverable now.
        delayed: messages waiting for their time (published with a delay, or retried later).
        in_flight: messages leased to a consumer and not yet settled.
        dead: messages in the queue's dead-letter queue (``<queue>.dead``).
    """

    ready: int
    delayed: int
    in_flight: int
    dead: int


def dead_queue(queue: str) -> str:
    """The name of ``queue``'s dead-letter queue."""
    return f"{queue}.dead"


@runtime_checkable
class Delivery(Protocol):
    """One message handed to one consumer.

    Each delivery is settled at most once, by :meth:`ack`, :meth:`retry` or :meth:`release`;
    settling calls after the first are ignored.

    Attributes:
        id: the broker's id for the message, stable across redeliveries; for logs.
        body: the bytes that were published, exactly.
        attempt: 1 on the first delivery, raised by one on every redelivery, whether by
            :meth:`retry` or by a lapsed lease. It survives consumer crashes, so a message that
            kills every consumer it reaches still sees its attempt count grow.
    """

    @property
    def id(self) -> str: ...

    @property
    def body(self) -> bytes: ...

    @property
    def attempt(self) -> int: ...

    async def ack(self) -> None:
        """Done: remove the message for good.

        In ``ON_COMPLETION`` mode an ack whose lease already lapsed (the message may meanwhile
        be leased to another consumer) must not remove that other copy. Acks may be batched
        internally; closing the broker flushes them. A no-op in ``ON_RECEIPT`` mode.
        """
        ...

    async def retry(self, delay: float) -> None:
        """Deliver again after ``delay`` seconds, with ``attempt`` raised by one.

        The consumer holds nothing for the message meanwhile (no unacked message waits in it).
        """
        ...

    async def release(self) -> None:
        """Give the message back now, unstarted: redelivered promptly, ``attempt`` unchanged."""
        ...

    async def extend(self, lease: float) -> None:
        """Keep the lease for ``lease`` more seconds from now. A no-op in ``ON_RECEIPT`` mode.

        Extending a lease that already lapsed does not revoke another consumer's lease.
        """
        ...


@runtime_checkable
class Broker(Protocol):
    """A connection to a message broker.

    Use it as an async context manager: entering connects, leaving flushes pending acks and
    closes. Errors raised are :class:`chute.errors.BrokerError` subclasses whose message names
    the URL (without password) and the queue.
    """

    @property
    def capabilities(self) -> Capabilities: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Store ``messages`` in ``queue``.

        When this returns, every message is stored as durably as the broker stores anything
        (``persistent`` says whether that survives no consumer listening). On error, some of
        the batch may have been stored; none is stored twice by one call.
        """
        ...

    def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        """Receive messages from ``queue``.

        Args:
            queue: the queue to read.
            ack: the ack mode; must be one of ``capabilities.acks``.
            prefetch: the most unsettled deliveries this consumer holds at once, counting the
                ones fetched but not yet yielded. At least 1.
            lease: seconds a delivery stays leased before it may go to another consumer
                (``ON_COMPLETION`` only).

        The iterator waits for messages without busy polling, and recovers from a lost
        connection by itself. Leaving the context gives back, promptly and without raising
        ``attempt``, every message fetched and not yet yielded; deliveries already yielded are
        the caller's to settle.
        """
        ...

    async def stats(self, queue: str) -> QueueStats:
        """Counts for ``queue`` and its dead-letter queue."""
        ...

    async def purge(self, queue: str) -> int:
        """Remove every ready and delayed message from ``queue``; return how many."""
        ...
