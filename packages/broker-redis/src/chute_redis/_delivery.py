"""One message handed to a consumer, and how settling it is queued for the next round trip."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chute_redis._consumer import Consumer


class RedisDelivery:
    """A message handed to a consumer; settle it once with ack, retry or release."""

    __slots__ = ("_consumer", "_count", "_done", "_member", "attempt", "body", "id")

    def __init__(self, consumer: Consumer, item: bytes, token: str) -> None:
        a = item.index(b":")
        b = item.index(b":", a + 1)
        self._consumer = consumer
        self._count = int(item[a + 1 : b])
        self._done = False
        self.id = item[:a].decode()
        self.body = item[b + 1 :]
        self.attempt = self._count + 1
        self._member = f"{self.id}|{token}" if consumer.leased else ""

    def __repr__(self) -> str:
        return f"<RedisDelivery {self._consumer.queue}/{self.id} attempt={self.attempt}>"

    def _item(self, count: int) -> bytes:
        return b"%s:%d:%s" % (self.id.encode(), count, self.body)

    def settle(self, op: str, delay: float = 0.0) -> bool:
        """Queue the settlement ``op``; ``False`` if already settled."""
        if self._done:
            return False
        self._done = True
        consumer = self._consumer
        consumer.unsettled -= 1
        ms = max(0.0, delay * 1000)
        if consumer.leased:
            if op == "a":
                consumer.acks.append(self._member)
                consumer.kick.notify()
            else:
                consumer.queue_op(op, self._member, ms)
        elif op == "r":
            consumer.queue_op("R", self._item(self.attempt), ms)
        elif op == "l":
            consumer.queue_op("L", self._item(self._count), 0)
        else:
            consumer.kick.notify()
        return True

    async def _settled(self, op: str, delay: float = 0.0) -> None:
        if self.settle(op, delay) and not self._consumer.running:
            await self._consumer.flush()

    async def ack(self) -> None:
        """Done: the message is removed (in ``ON_RECEIPT`` mode it already was).

        Returns at once; the ack travels with the consumer's next round trip, and leaving
        the consumer or closing the broker sends any still queued.
        """
        await self._settled("a")

    async def retry(self, delay: float) -> None:
        """Deliver again after ``delay`` seconds with ``attempt`` raised by one."""
        await self._settled("r", delay)

    async def release(self) -> None:
        """Back to the head of the queue now, ``attempt`` unchanged."""
        await self._settled("l")

    async def extend(self, lease: float) -> None:
        """Keep the lease ``lease`` seconds from when the extension reaches Redis."""
        consumer = self._consumer
        if self._done or not consumer.leased:
            return
        consumer.queue_op("e", self._member, max(1, round(lease * 1000)))
        if not consumer.running:
            await consumer.flush()
