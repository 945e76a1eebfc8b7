"""``ON_COMPLETION`` consumers: the server pushes.

One channel per consumer, QoS prefetch = ``prefetch``, manual acks. The server never sends more
than ``prefetch`` unacknowledged messages, and takes them all back (``x-delivery-count``
raised) when the channel or the connection dies.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

import aiormq.abc
import aiormq.exceptions
import anyio
import anyio.lowlevel

from chute.errors import BrokerError, BrokerUnavailable
from chute_rabbitmq._consumer import (
    IDLE_CHECK,
    Consumer,
    RabbitDelivery,
    log,
    when_closed,
)
from chute_rabbitmq._link import Channel, is_lost

if TYPE_CHECKING:
    from chute_rabbitmq._broker import RabbitBroker

# Seconds between the last ack and the cancel of a closing consumer (see PushConsumer.close).
_QUIET = 0.2


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
        when_closed(channel, self.signal.notify)
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
            with anyio.move_on_after(IDLE_CHECK) as idle:
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
