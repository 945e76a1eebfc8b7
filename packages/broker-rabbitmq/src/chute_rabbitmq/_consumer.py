"""Deliveries, and what both kinds of consumer share (see ``_push`` and ``_pull``).

A delivery remembers the channel it came on. Settling it after that channel died is a no-op:
the server already took the message back, so no stale delivery tag ever reaches a new channel.
Retry and release publish a copy (confirmed) carrying the attempts used so far in the
``x-chute-attempts`` header, then ack the original; ``attempt`` is that header plus the
server's ``x-delivery-count`` plus one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import aiormq.abc
import aiormq.exceptions
import anyio

from chute.errors import BrokerUnavailable
from chute_rabbitmq._link import Channel, server_text

if TYPE_CHECKING:
    from chute_rabbitmq._broker import RabbitBroker

log = logging.getLogger("chute.rabbitmq")

ATTEMPTS_HEADER = "x-chute-attempts"
_RECONNECT_MAX = 2.0
# Seconds an idle consumer waits before checking that its queue still exists.
IDLE_CHECK = 5.0


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _closing(channel: Channel) -> asyncio.Future[Any]:
    # aiormq types it as a bare Future.
    return cast("asyncio.Future[Any]", channel.closing)  # pyright: ignore[reportUnknownMemberType]


def close_reason(channel: Channel) -> BaseException | None:
    closing = _closing(channel)
    if not closing.done() or closing.cancelled():
        return None
    return closing.exception()


def when_closed(channel: Channel, callback: Callable[[], None]) -> None:
    _closing(channel).add_done_callback(lambda _: callback())


async def ack_on(channel: Channel | None, tag: int) -> bool:
    """Ack ``tag`` on ``channel``; ``False`` if the channel is gone (the server took it back)."""
    if channel is None or channel.is_closed:
        return False
    try:
        await channel.basic_ack(tag, wait=False)
    except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError):
        return False
    return True


class _Signal:
    """Wakes every waiter on each :meth:`notify`; single event loop, so no wake-up is lost.

    Plain asyncio: it is notified from driver callbacks, outside any task.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class RabbitDelivery:
    """One message handed to one consumer (see :class:`chute.broker.Delivery`)."""

    __slots__ = ("_channel", "_consumer", "_done", "_tag", "_yielded", "attempt", "body", "id",
                 "returned")  # fmt: skip

    def __init__(
        self, consumer: Consumer, message: aiormq.abc.DeliveredMessage, channel: Channel | None
    ) -> None:
        properties = message.header.properties
        headers: dict[str, Any] = dict(properties.headers or {})
        used = _int(headers.get(ATTEMPTS_HEADER))
        self.returned = _int(headers.get("x-delivery-count"))
        self._consumer = consumer
        self._channel = channel
        self._tag = message.delivery_tag or 0
        self._done = False
        self._yielded = False
        self.id = properties.message_id or f"{consumer.queue}#{self._tag}"
        self.body = message.body
        self.attempt = used + self.returned + 1

    def __repr__(self) -> str:
        return f"<RabbitDelivery {self.id} attempt={self.attempt}>"

    def _claim(self) -> bool:
        if self._done:
            return False
        self._done = True
        if self._yielded:
            self._consumer.settled()
        return True

    async def ack(self) -> None:
        if self._claim():
            await self._consumer.settle(self, None, 0.0)

    async def retry(self, delay: float) -> None:
        if self._claim():
            await self._consumer.settle(self, self.attempt, delay)

    async def release(self) -> None:
        if self._claim():
            await self._consumer.settle(self, self.attempt - 1, 0.0)

    async def extend(self, lease: float) -> None:
        # A delivery stays leased for as long as its channel lives; there is nothing to extend.
        del lease


class Consumer:
    """What both consumer kinds share: accounting, settlement, reconnection, closing."""

    def __init__(self, broker: RabbitBroker, queue: str, prefetch: int) -> None:
        self.broker = broker
        self.queue = queue
        self.prefetch = max(1, prefetch)
        self.unsettled = 0  # yielded and not yet settled
        self.signal = _Signal()
        self.channel: Channel | None = None
        self.closed = False
        self.busy = 0  # settlements under way
        self.last_ack = -math.inf
        self._retired: set[Channel] = set()

    @property
    def held(self) -> int:
        """Messages this consumer holds unacknowledged on the server."""
        return 0

    def settled(self) -> None:
        self.unsettled -= 1
        self.signal.notify()

    def _yield(self, delivery: RabbitDelivery) -> RabbitDelivery:
        delivery._yielded = True  # pyright: ignore[reportPrivateUsage]
        self.unsettled += 1
        return delivery

    async def _ack(self, channel: Channel, tag: int) -> None:
        self.last_ack = time.monotonic()
        await ack_on(channel, tag)

    def _usable(self, channel: Channel) -> bool:
        return not channel.is_closed and channel not in self._retired

    async def settle(self, delivery: RabbitDelivery, attempts: int | None, delay: float) -> None:
        """Ack (``attempts`` is ``None``) or send back a copy after ``delay`` seconds."""
        channel = delivery._channel  # pyright: ignore[reportPrivateUsage]
        tag = delivery._tag  # pyright: ignore[reportPrivateUsage]
        if channel is not None and not self._usable(channel):
            return  # the server took the message back when the channel closed
        self.busy += 1
        try:
            if attempts is not None:
                try:
                    await self.broker.send(
                        self.queue, [(delivery.body, delivery.id, attempts, delay)]
                    )
                except BaseException:
                    if channel is not None and self._usable(channel):
                        # Put the original back rather than leave it stuck on a live channel.
                        with anyio.CancelScope(shield=True):
                            try:
                                await channel.basic_nack(tag, requeue=True)
                            except Exception as exc:
                                log.debug("could not return message %s: %s", delivery.id, exc)
                    raise
            if channel is not None and self._usable(channel):
                await self._ack(channel, tag)
        finally:
            self.busy -= 1
            self.signal.notify()
        await self._after_settle()

    async def _after_settle(self) -> None:
        if self.closed and self.unsettled <= 0 and self.busy == 0:
            await self._close_channel()

    async def _close_channel(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None and not channel.is_closed:
            # Retired first: no ack may follow the close frame onto a closing channel, which
            # the server would answer by closing the whole connection.
            self._retired.add(channel)
            try:
                with anyio.move_on_after(self.broker.link.connect_timeout):
                    await channel.close()
            except Exception as exc:
                log.debug("closing a consumer channel of queue %r: %s", self.queue, exc)
        if self.unsettled <= 0:
            self.broker.consumers.discard(self)

    async def _reopen(self) -> None:
        """Open the channel again after a loss, retrying until the server answers."""
        old, self.channel = self.channel, None
        if old is not None:
            self._lost(old)
        wait = 0.05
        while True:
            try:
                await self.open()
                return
            except BrokerUnavailable as exc:
                if self.broker.link.closed:
                    raise
                log.warning("consumer of queue %r: %s; retrying in %.2f s", self.queue, exc, wait)
                await anyio.sleep(wait)
                wait = min(wait * 2, _RECONNECT_MAX)

    def _lost(self, channel: Channel) -> None:
        reason = close_reason(channel)
        text = server_text(reason) if reason is not None else "closed"
        if "acknowledgement" in text and "timed out" in text:
            log.error(
                "RabbitMQ at %s took back the messages of a consumer of queue %r: a delivery "
                "stayed unacknowledged longer than the server's consumer_timeout (%s). Jobs "
                "that run this long are redelivered while they run: raise consumer_timeout in "
                "rabbitmq.conf, or run RabbitMQ 3.12+ where chute lifts it per consumer.",
                self.broker.link.shown,
                self.queue,
                text,
            )
        else:
            log.warning("consumer of queue %r lost its channel (%s); reopening", self.queue, text)

    async def open(self) -> None:
        raise NotImplementedError

    async def next(self) -> RabbitDelivery:
        raise NotImplementedError

    async def deliveries(self) -> AsyncIterator[RabbitDelivery]:
        while True:
            yield await self.next()

    async def close(self) -> None:
        raise NotImplementedError
