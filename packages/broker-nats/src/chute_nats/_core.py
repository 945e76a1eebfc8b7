"""Core NATS mode: a queue group on a plain subject, pure push, nothing stored.

The server hands each message to one member of the queue group that is subscribed at that
moment, and to nobody if none is: a message published while no consumer listens is lost.
Every delivery is at most once (``ON_RECEIPT``). A delayed message, or one retried with a
delay, travels at once with a ``Chute-Due`` header and waits in the memory of the consumer
that receives it; a consumer that closes gracefully hands its unstarted and waiting messages
back to the group, and one that crashes loses them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chute.broker import Outgoing
from chute.errors import BrokerError
from chute_nats._connection import Connection
from chute_nats._pull import Signal
from chute_nats._settings import ATTEMPTS, DUE, ORIGIN

log = logging.getLogger("chute.nats")

GROUP = "chute"
_ids = itertools.count(1)
_prefix = f"{os.getpid():x}-{int(time.time() * 1000) % 10**8:x}"


def _headers(attempts: int, origin: str | None, delay: float) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if attempts:
        headers[ATTEMPTS] = str(attempts)
    if origin is not None:
        headers[ORIGIN] = origin
    if delay > 0:
        headers[DUE] = f"{time.time() + delay:.6f}"
    return headers or None


async def publish(conn: Connection, queue: str, messages: Sequence[Outgoing]) -> None:
    """Send ``messages``; once this returns the server has them (and has passed them on)."""
    subject = conn.settings.core_subject(queue)
    nc = conn.nc
    for message in messages:
        await nc.publish(subject, message.body, headers=_headers(0, None, message.delay))
    await conn.flush()


class CoreConsumer:
    """One ``consume()`` of a queue in core NATS mode."""

    def __init__(self, conn: Connection, queue: str, prefetch: int) -> None:
        self.conn = conn
        self.queue = queue
        self.prefetch = prefetch
        self.unsettled = 0
        self.wake = Signal()
        self._buffer: deque[CoreDelivery] = deque()
        self._waiting: list[tuple[float, int, CoreDelivery]] = []
        self._sub: Subscription | None = None

    async def open(self) -> None:
        nc = self.conn.nc
        subject = self.conn.settings.core_subject(self.queue)
        self._sub = await nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
            subject, queue=GROUP, cb=self._arrived
        )
        # Once the server has the subscription, whatever is published next reaches the group.
        await self.conn.flush()

    async def _arrived(self, msg: Msg) -> None:
        delivery = CoreDelivery(self, msg)
        if delivery.due > time.time():
            heapq.heappush(self._waiting, (delivery.due, next(_ids), delivery))
        else:
            self._buffer.append(delivery)
        self.wake.set()

    def settled(self) -> None:
        self.unsettled -= 1
        self.wake.set()

    async def deliveries(self) -> AsyncGenerator[CoreDelivery]:
        while True:
            now = time.time()
            while self._waiting and self._waiting[0][0] <= now:
                self._buffer.append(heapq.heappop(self._waiting)[2])
            if self._buffer and self.unsettled < self.prefetch:
                self.unsettled += 1
                yield self._buffer.popleft()
                continue
            due = self._waiting[0][0] - now if self._waiting else math.inf
            await self.wake.wait(due)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await asyncio.shield(sub.drain())
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("queue %r: could not drain the subscription: %s", self.queue, exc)
        left = [*self._buffer, *(entry[2] for entry in self._waiting)]
        self._buffer.clear()
        self._waiting.clear()
        try:
            for delivery in left:
                await delivery.resend(delivery.attempt - 1, max(0.0, delivery.due - time.time()))
            if left:
                await self.conn.flush()
        except (BrokerError, nats.errors.Error, TimeoutError) as exc:
            log.warning("queue %r: could not hand back %d message(s): %s",
                        self.queue, len(left), exc)  # fmt: skip


class CoreDelivery:
    """A message from a core NATS queue group; acks and leases do not apply."""

    __slots__ = ("_consumer", "_done", "attempt", "body", "due", "id")

    def __init__(self, consumer: CoreConsumer, msg: Msg) -> None:
        headers = msg.headers or {}
        self._consumer = consumer
        self._done = False
        self.id = headers.get(ORIGIN) or f"{_prefix}-{next(_ids)}"
        self.body = msg.data
        self.attempt = int(headers.get(ATTEMPTS, "0")) + 1
        self.due = float(headers.get(DUE, "0"))

    def __repr__(self) -> str:
        return f"<CoreDelivery {self.id} attempt={self.attempt}>"

    def _settle(self) -> bool:
        if self._done:
            return False
        self._done = True
        self._consumer.settled()
        return True

    async def resend(self, attempts: int, delay: float) -> None:
        conn = self._consumer.conn
        await conn.nc.publish(
            conn.settings.core_subject(self._consumer.queue),
            self.body,
            headers=_headers(attempts, self.id, delay),
        )

    async def ack(self) -> None:
        self._settle()

    async def retry(self, delay: float) -> None:
        if self._settle():
            with self._consumer.conn.failures(self._consumer.queue, "retrying"):
                await self.resend(self.attempt, delay)

    async def release(self) -> None:
        if self._settle():
            with self._consumer.conn.failures(self._consumer.queue, "releasing"):
                await self.resend(self.attempt - 1, 0.0)

    async def extend(self, lease: float) -> None:
        del lease
