"""Brokers with one deliberate defect each, to show the conformance suite catches it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import ClassVar, Self

from chute.broker import Ack, Capabilities, Delivery, Outgoing, QueueStats
from chute.brokers.memory import MemoryBroker
from chute.brokers.sqlite import SqliteBroker


class _Wrapper:
    """Delegates everything to a memory broker; subclasses bend one thing."""

    def __init__(self, url: str = "memory://") -> None:
        self.inner = MemoryBroker(url)

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def publish(self, queue: str, messages: list[Outgoing]) -> None:
        await self.inner.publish(queue, messages)

    async def stats(self, queue: str) -> QueueStats:
        return await self.inner.stats(queue)

    async def purge(self, queue: str) -> int:
        return await self.inner.purge(queue)

    def wrap(self, delivery: Delivery) -> Delivery:
        return delivery

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        async with self.inner.consume(
            queue, ack=ack, prefetch=self.prefetch(prefetch), lease=lease
        ) as deliveries:

            async def wrapped() -> AsyncIterator[Delivery]:
                async for delivery in deliveries:
                    yield self.wrap(delivery)

            yield wrapped()

    def prefetch(self, asked: int) -> int:
        return asked


class _AckIgnored:
    def __init__(self, inner: Delivery) -> None:
        self.inner = inner
        self.id, self.body, self.attempt = inner.id, inner.body, inner.attempt

    async def ack(self) -> None:
        return None

    async def retry(self, delay: float) -> None:
        await self.inner.retry(delay)

    async def release(self) -> None:
        await self.inner.release()

    async def extend(self, lease: float) -> None:
        await self.inner.extend(lease)


class AckDoesNothing(_Wrapper):
    """ack() is ignored: the message stays leased and comes back when the lease lapses."""

    def wrap(self, delivery: Delivery) -> Delivery:
        return _AckIgnored(delivery)


class IgnoresPrefetch(_Wrapper):
    """Takes everything available, whatever prefetch it was given."""

    def prefetch(self, asked: int) -> int:
        return 10_000


class NoFencing(SqliteBroker):
    """An ack removes the message whoever holds it now: a stale ack destroys the live copy."""

    _settle_sql: ClassVar[Mapping[str, str]] = {
        **SqliteBroker._settle_sql,
        "ack": "DELETE FROM chute_messages WHERE id = ?2 AND ?3 = ?3",
    }


class LeasesNeverLapse(SqliteBroker):
    """Leases never expire: what a crashed consumer held is stuck for good."""

    _claim_leased_sql = SqliteBroker._claim_leased_sql.replace(
        "available_at = ?", "available_at = 1e18 + 0 * ?"
    )
