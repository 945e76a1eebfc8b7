"""An in-process broker with the full semantics of a real one.

:class:`MemoryBroker` leases, delays, counts attempts, fences stale acks and releases on close
exactly as the networked brokers do; nothing runs eagerly. It is what you run your own test
suites on, and the reference implementation the conformance suite is measured against.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from chute._waker import Waker
from chute.broker import Ack, Capabilities, Outgoing, QueueStats, dead_queue
from chute.stores.memory import MemoryStore

__all__ = ["MemoryBroker"]


@dataclass(slots=True)
class _Message:
    id: int
    body: bytes
    available_at: float
    deliveries: int = 0
    token: int | None = None
    lease_until: float = 0.0


@dataclass(slots=True)
class _Queue:
    messages: dict[int, _Message] = field(default_factory=dict[int, _Message])
    # Unleased messages by (available_at, id); entries go stale when a message is claimed,
    # acked or rescheduled, and are skipped on pop.
    schedule: list[tuple[float, int]] = field(default_factory=list[tuple[float, int]])
    # Leased messages by (lease_until, id, token); stale entries are skipped likewise.
    leases: list[tuple[float, int, int]] = field(default_factory=list[tuple[float, int, int]])
    waker: Waker = field(default_factory=Waker)

    def push(self, msg: _Message) -> None:
        msg.token = None
        heapq.heappush(self.schedule, (msg.available_at, msg.id))
        self.waker.notify()

    def reclaim_expired(self, now: float) -> None:
        while self.leases and self.leases[0][0] <= now:
            lease_until, msg_id, token = heapq.heappop(self.leases)
            msg = self.messages.get(msg_id)
            if msg is not None and msg.token == token and msg.lease_until == lease_until:
                msg.available_at = lease_until
                self.push(msg)

    def pop_ready(self, now: float) -> _Message | None:
        while self.schedule and self.schedule[0][0] <= now:
            available_at, msg_id = heapq.heappop(self.schedule)
            msg = self.messages.get(msg_id)
            if msg is not None and msg.token is None and msg.available_at == available_at:
                return msg
        return None

    def next_due(self) -> float:
        due = math.inf
        if self.schedule:
            due = self.schedule[0][0]
        if self.leases:
            due = min(due, self.leases[0][0])
        return due


class MemoryBroker:
    """A broker that lives in this process. Both ack modes, leases, delays, stale-ack fencing.

    Args:
        url: accepted for symmetry with the other brokers (``memory://``); ignored.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._store: MemoryStore | None = None

    def default_store(self) -> MemoryStore:
        """The store that lives beside this broker, for results, unique keys and cron."""
        if self._store is None:
            self._store = MemoryStore()
        return self._store

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            acks=frozenset({Ack.ON_RECEIPT, Ack.ON_COMPLETION}),
            max_delay=None,
            max_body=None,
            ordered=True,
            persistent=True,
            shared=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        q = self._queue(queue)
        now = time.monotonic()
        for out in messages:
            msg = _Message(id=next(self._ids), body=out.body, available_at=now + out.delay)
            q.messages[msg.id] = msg
            q.push(msg)

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncGenerator[AsyncIterator[_MemoryDelivery], None]:
        consumer = _Consumer(self, self._queue(queue), ack, max(1, prefetch), lease)
        try:
            yield consumer.deliveries()
        finally:
            consumer.close()

    def _requeue(self, q: _Queue, msg: _Message, delay: float) -> None:
        msg.available_at = time.monotonic() + delay
        q.messages[msg.id] = msg
        q.push(msg)

    async def stats(self, queue: str) -> QueueStats:
        now = time.monotonic()
        ready = delayed = in_flight = 0
        for msg in self._queue(queue).messages.values():
            if msg.token is not None and msg.lease_until > now:
                in_flight += 1
            elif msg.token is not None or msg.available_at <= now:
                ready += 1
            else:
                delayed += 1
        return QueueStats(ready, delayed, in_flight, len(self._queue(dead_queue(queue)).messages))

    async def purge(self, queue: str) -> int:
        q = self._queue(queue)
        doomed = [m.id for m in q.messages.values() if m.token is None]
        for msg_id in doomed:
            del q.messages[msg_id]
        return len(doomed)


class _Consumer:
    def __init__(
        self, broker: MemoryBroker, q: _Queue, ack: Ack, prefetch: int, lease: float
    ) -> None:
        self.broker = broker
        self.q = q
        self.ack = ack
        self.prefetch = prefetch
        self.lease = lease
        self.unsettled = 0
        self.buffer: list[_MemoryDelivery] = []
        self.settled = Waker()

    def _claim(self, now: float) -> _MemoryDelivery | None:
        self.q.reclaim_expired(now)
        msg = self.q.pop_ready(now)
        if msg is None:
            return None
        msg.deliveries += 1
        token = next(self.broker._tokens)  # pyright: ignore[reportPrivateUsage]
        if self.ack is Ack.ON_RECEIPT:
            del self.q.messages[msg.id]
        else:
            msg.token = token
            msg.lease_until = now + self.lease
            heapq.heappush(self.q.leases, (msg.lease_until, msg.id, token))
        self.unsettled += 1
        return _MemoryDelivery(self, msg, token)

    async def deliveries(self) -> AsyncGenerator[_MemoryDelivery, None]:
        while True:
            if not self.buffer:
                await self._fill()
            yield self.buffer.pop(0)

    async def _fill(self) -> None:
        while True:
            if self.unsettled >= self.prefetch:
                await self.settled.wait()
                continue
            now = time.monotonic()
            while self.unsettled < self.prefetch:
                delivery = self._claim(now)
                if delivery is None:
                    break
                self.buffer.append(delivery)
            if self.buffer:
                return
            await self.q.waker.wait(self.q.next_due() - time.monotonic())

    def close(self) -> None:
        for delivery in self.buffer:
            delivery.release_now()
        self.buffer.clear()


class _MemoryDelivery:
    __slots__ = ("_consumer", "_done", "_msg", "_token", "attempt", "body", "id")

    def __init__(self, consumer: _Consumer, msg: _Message, token: int) -> None:
        self._consumer = consumer
        self._msg = msg
        self._token = token
        self._done = False
        self.id = str(msg.id)
        self.body = msg.body
        self.attempt = msg.deliveries

    def _settle(self) -> bool:
        """Mark settled; ``True`` if this delivery still owns the message."""
        if self._done:
            return False
        self._done = True
        consumer = self._consumer
        consumer.unsettled -= 1
        consumer.settled.notify()
        if consumer.ack is Ack.ON_RECEIPT:
            return True
        current = consumer.q.messages.get(self._msg.id)
        return current is self._msg and self._msg.token == self._token

    async def ack(self) -> None:
        if self._settle() and self._consumer.ack is Ack.ON_COMPLETION:
            del self._consumer.q.messages[self._msg.id]

    async def retry(self, delay: float) -> None:
        if self._settle():
            self._consumer.broker._requeue(self._consumer.q, self._msg, delay)  # pyright: ignore[reportPrivateUsage]

    async def release(self) -> None:
        self.release_now()

    def release_now(self) -> None:
        if self._settle():
            self._msg.deliveries -= 1
            self._consumer.broker._requeue(self._consumer.q, self._msg, 0.0)  # pyright: ignore[reportPrivateUsage]

    async def extend(self, lease: float) -> None:
        consumer = self._consumer
        msg = self._msg
        if self._done or consumer.ack is Ack.ON_RECEIPT or msg.token != self._token:
            return
        now = time.monotonic()
        if msg.lease_until <= now:
            # Lapsed: another consumer may claim it at any moment; do not revive the lease.
            return
        msg.lease_until = now + lease
        heapq.heappush(consumer.q.leases, (msg.lease_until, msg.id, self._token))
