"""Consumers and their deliveries.

``ON_COMPLETION`` consumers push: one channel per consumer, QoS prefetch = ``prefetch``, manual
acks. The server never sends more than ``prefetch`` unacknowledged messages, and returns them
all (``x-delivery-count`` raised) when the channel or the connection dies.

``ON_RECEIPT`` consumers pull: ``basic.get`` with automatic ack, one message per free slot, so
a consumer never holds more than ``prefetch`` and a crash loses only what it held. When the
queue is empty, a consumer with QoS 1 waits for the next message without polling.

A delivery remembers the channel it came on. Settling it after that channel died is a no-op:
the server already took the message back, so no stale delivery tag ever reaches a new channel.
Retry and release publish a copy (confirmed) carrying the attempts used so far in the
``x-chute-attempts`` header, then ack the original; ``attempt`` is that header plus the
server's ``x-delivery-count`` plus one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import aiormq.abc
import aiormq.exceptions
import anyio
import anyio.lowlevel
from pamqp import commands as spec

from chute.broker import Ack
from chute.errors import BrokerError, BrokerUnavailable
from chute_rabbitmq._link import Channel, is_lost, server_text

if TYPE_CHECKING:
    from chute_rabbitmq._broker import RabbitBroker

log = logging.getLogger("chute.rabbitmq")

ATTEMPTS_HEADER = "x-chute-attempts"
_RECONNECT_MAX = 2.0
# Seconds between the last ack and the cancel of a closing consumer (see PushConsumer.close).
_QUIET = 0.2
# Seconds an idle consumer waits before checking that its queue still exists.
_IDLE_CHECK = 5.0


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


def _when_closed(channel: Channel, callback: Callable[[], None]) -> None:
    _closing(channel).add_done_callback(lambda _: callback())


async def _ack(channel: Channel | None, tag: int) -> bool:
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
        await _ack(channel, tag)

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


class PushConsumer(Consumer):
    """``ON_COMPLETION``: the server pushes up to ``prefetch`` unacknowledged messages."""

    def __init__(
        self, broker: RabbitBroker, queue: str, prefetch: int, arguments: dict[str, Any] | None
    ) -> None:
        super().__init__(broker, queue, prefetch)
        self.arguments = arguments
        self.buffer: collections.deque[RabbitDelivery] = collections.deque()
        self.tag: str | None = None
        self.cancelled = False

    @property
    def held(self) -> int:
        return self.unsettled + len(self.buffer)

    async def open(self) -> None:
        link = self.broker.link
        await self.broker.topology.declare(self.queue)
        channel = await link.open_channel()
        try:
            with link.errors(self.queue, "starting a consumer"):
                await channel.basic_qos(prefetch_count=self.prefetch)
                channel.on_consumer_cancel_callbacks.add(self._on_cancel)
                ok = await channel.basic_consume(
                    self.queue, self._on_message, no_ack=False, arguments=self.arguments
                )
        except BrokerError as exc:
            if isinstance(exc.__cause__, aiormq.exceptions.ChannelNotFoundEntity):
                self.broker.topology.forget(self.queue)
                raise BrokerUnavailable(str(exc)) from exc
            raise
        _when_closed(channel, self.signal.notify)
        self.cancelled = False
        self.channel, self.tag = channel, ok.consumer_tag

    def _on_cancel(self, frame: Any) -> None:
        # The server cancelled the consumer (the queue was deleted): reopen, which redeclares.
        del frame
        self.cancelled = True
        self.broker.topology.forget(self.queue)
        self.signal.notify()

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        delivery = RabbitDelivery(self, message, message.channel)
        if delivery.returned == 0 or self.closed:
            self.buffer.append(delivery)  # closing: given back, attempt kept, after the cancel
            self.signal.notify()
            return
        # Taken back from a consumer that died: to the back of the queue, attempt kept, as a
        # lapsed lease comes back after the messages already waiting.
        try:
            await self.settle(delivery, delivery.attempt - 1, 0.0)
        except Exception as exc:
            log.warning("could not requeue message %s of %r: %s", delivery.id, self.queue, exc)

    async def next(self) -> RabbitDelivery:
        while True:
            channel = self.channel
            if channel is None or channel.is_closed or self.cancelled:
                if channel is not None and self.cancelled:
                    await self._close_quietly(channel)
                self.buffer.clear()  # a dead channel's messages went back to the queue
                await self._reopen()
                continue
            if self.buffer and self.unsettled < self.prefetch:
                delivery = self.buffer.popleft()
                if delivery._channel is not channel:  # pyright: ignore[reportPrivateUsage]
                    continue
                if delivery.returned:
                    await self._give_back(delivery)
                    continue
                return self._yield(delivery)
            with anyio.move_on_after(_IDLE_CHECK) as idle:
                await self.signal.wait()
            if idle.cancelled_caught and not self.buffer:
                await self._check_subscribed()

    async def _check_subscribed(self) -> None:
        # RabbitMQ 3.10 does not tell the consumers of a deleted quorum queue: while idle, make
        # sure the queue still exists and has consumers, else subscribe again.
        try:
            count = await self.broker.topology.consumers(self.queue)
        except BrokerUnavailable:
            return  # the channel's own closure says more
        if not count:
            self.cancelled = True
            self.broker.topology.forget(self.queue)

    async def _close_quietly(self, channel: Channel) -> None:
        self._retired.add(channel)
        try:
            await channel.close()
        except Exception as exc:
            log.debug("closing a cancelled consumer channel: %s", exc)

    async def close(self) -> None:
        self.closed = True
        channel = self.channel
        if channel is not None and not channel.is_closed and self.tag is not None:
            # A quorum queue answers an ack by sending the next message; if the cancel overtakes
            # that message, the server keeps it out of reach until the channel closes and then
            # counts it as redelivered. Let the messages our last acks asked for arrive first.
            quiet = self.last_ack + _QUIET - time.monotonic()
            if quiet > 0:
                await anyio.sleep(quiet)
            try:
                await channel.basic_cancel(self.tag)
            except Exception as exc:
                if not is_lost(exc):
                    log.debug("cancelling the consumer of %r: %s", self.queue, exc)
        await anyio.lowlevel.checkpoint()  # let deliveries already read reach the buffer
        buffered, self.buffer = list(self.buffer), collections.deque()
        async with anyio.create_task_group() as tg:
            for delivery in buffered:
                if delivery._claim():  # pyright: ignore[reportPrivateUsage]
                    tg.start_soon(self._give_back, delivery)
        with anyio.move_on_after(self.broker.link.connect_timeout):
            while self.busy:
                await self.signal.wait()
        await self._after_settle()

    async def _give_back(self, delivery: RabbitDelivery) -> None:
        try:
            await self.settle(delivery, delivery.attempt - 1, 0.0)
        except Exception as exc:
            log.warning("could not give back message %s of %r: %s", delivery.id, self.queue, exc)


class PullConsumer(Consumer):
    """``ON_RECEIPT``: one ``basic.get`` (auto-ack) per free slot; waits on an empty queue."""

    def __init__(self, broker: RabbitBroker, queue: str, prefetch: int) -> None:
        super().__init__(broker, queue, prefetch)
        self.bell: RabbitDelivery | None = None
        self.dropped = False  # the server cancelled the waiting consumer (queue deleted)

    def _on_cancel(self, frame: Any) -> None:
        del frame
        self.dropped = True
        self.broker.topology.forget(self.queue)
        self.signal.notify()

    async def open(self) -> None:
        link = self.broker.link
        await self.broker.topology.declare(self.queue)
        channel = await link.open_channel()
        with link.errors(self.queue, "starting a consumer"):
            await channel.basic_qos(prefetch_count=1)
        channel.on_consumer_cancel_callbacks.add(self._on_cancel)
        _when_closed(channel, self.signal.notify)
        self.channel = channel

    async def next(self) -> RabbitDelivery:
        while True:
            while self.unsettled >= self.prefetch:
                await self.signal.wait()
            channel = self.channel
            if channel is None or channel.is_closed:
                await self._reopen()
                continue
            bell, self.bell = self.bell, None
            if bell is not None:
                # Acked now, on receipt; if its channel died it went back to the queue. Shielded
                # here and below: a message taken from the server must reach the caller.
                acked = False
                with anyio.CancelScope(shield=True):
                    acked = bell._channel is channel and await _ack(channel, bell._tag)  # pyright: ignore[reportPrivateUsage]
                if acked:
                    bell._channel = None  # pyright: ignore[reportPrivateUsage]
                    return self._yield(bell)
                continue
            message: aiormq.abc.DeliveredMessage | None = None
            with anyio.CancelScope(shield=True):
                message = await self._get(channel)
            if message is not None:
                return self._yield(RabbitDelivery(self, message, None))
            if not channel.is_closed:
                await self._wait_for_one(channel)

    async def _get(self, channel: Channel) -> aiormq.abc.DeliveredMessage | None:
        try:
            with self.broker.link.errors(self.queue, "fetching a message"):
                message = await channel.basic_get(self.queue, no_ack=True)
        except BrokerUnavailable:
            return None
        except BrokerError as exc:
            if isinstance(exc.__cause__, aiormq.exceptions.ChannelNotFoundEntity):
                self.broker.topology.forget(self.queue)
                return None
            raise
        return message if isinstance(message.delivery, spec.Basic.GetOk) else None

    async def _wait_for_one(self, channel: Channel) -> None:
        async def arrived(message: aiormq.abc.DeliveredMessage) -> None:
            if self.bell is None:
                self.bell = RabbitDelivery(self, message, channel)
            self.signal.notify()

        self.dropped = False
        try:
            with self.broker.link.errors(self.queue, "waiting for a message"):
                ok = await channel.basic_consume(self.queue, arrived, no_ack=False)
        except BrokerError:
            return  # the loop reopens the channel or redeclares the queue
        try:
            # Wakes now and then: RabbitMQ 3.10 does not cancel the consumers of a deleted
            # quorum queue, and the next basic.get notices it.
            with anyio.move_on_after(_IDLE_CHECK):
                while self.bell is None and not channel.is_closed and not self.dropped:
                    await self.signal.wait()
        finally:
            with anyio.CancelScope(shield=True):
                if not channel.is_closed and ok.consumer_tag is not None:
                    try:
                        await channel.basic_cancel(ok.consumer_tag)
                    except Exception as exc:
                        log.debug("cancelling a waiting consumer of %r: %s", self.queue, exc)

    async def close(self) -> None:
        self.closed = True
        bell, self.bell = self.bell, None
        if bell is not None and bell._claim():  # pyright: ignore[reportPrivateUsage]
            try:
                await self.settle(bell, bell.attempt - 1, 0.0)
            except Exception as exc:
                log.warning("could not give back message %s of %r: %s", bell.id, self.queue, exc)
        # Nothing else is unacknowledged on the server: deliveries were acked on receipt.
        channel, self.channel = self.channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                log.debug("closing a consumer channel of queue %r: %s", self.queue, exc)
        self.broker.consumers.discard(self)

    async def _after_settle(self) -> None:
        return None


def consumer_for(
    broker: RabbitBroker, queue: str, ack: Ack, prefetch: int, arguments: dict[str, Any] | None
) -> Consumer:
    if ack is Ack.ON_COMPLETION:
        return PushConsumer(broker, queue, prefetch, arguments)
    return PullConsumer(broker, queue, prefetch)
