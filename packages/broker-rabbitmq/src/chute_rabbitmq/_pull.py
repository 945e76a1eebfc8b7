"""``ON_RECEIPT`` consumers: one ``basic.get`` (automatic ack) per free slot.

A message leaves the server as it is handed out, so a consumer never holds more than
``prefetch`` and a crash loses only what it held. On an empty queue a QoS-1 subscription waits
for the next message instead of polling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiormq.abc
import aiormq.exceptions
import anyio
from pamqp import commands as spec

from chute.errors import BrokerError, BrokerUnavailable
from chute_rabbitmq._consumer import (
    IDLE_CHECK,
    Consumer,
    RabbitDelivery,
    ack_on,
    log,
    when_closed,
)
from chute_rabbitmq._link import Channel

if TYPE_CHECKING:
    from chute_rabbitmq._broker import RabbitBroker


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
        when_closed(channel, self.signal.notify)
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
                    acked = bell._channel is channel and await ack_on(channel, bell._tag)  # pyright: ignore[reportPrivateUsage]
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
            with anyio.move_on_after(IDLE_CHECK):
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
