"""The RabbitMQ broker: publishing with confirms, consuming, counts and purges."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiormq
import aiormq.abc
import anyio
from pamqp import commands as spec
from pamqp.common import FieldTable

from chute.broker import Ack, Capabilities, Outgoing, QueueStats, dead_queue
from chute.errors import BrokerConfigConflict, BrokerError, ConfigurationError
from chute.plugins import redact_url
from chute_rabbitmq._consumer import ATTEMPTS_HEADER, Consumer, RabbitDelivery
from chute_rabbitmq._link import Channel, Link
from chute_rabbitmq._pull import PullConsumer
from chute_rabbitmq._push import PushConsumer
from chute_rabbitmq._topology import MAX_DELAY_MS, Topology, delay_route

__all__ = ["RabbitBroker"]

# RabbitMQ accepts x-consumer-timeout per consumer from these versions on.
PER_CONSUMER_TIMEOUT = (3, 11, 15)
# The longest per-consumer timeout chute asks for when none is given (about 24.8 days).
LONGEST_CONSUMER_TIMEOUT_MS = (1 << 31) - 1
# RabbitMQ 4's default max_message_size; 3.x allows 128 MiB.
MAX_BODY = 16 * 1024 * 1024

_OPTIONS = ("consumer_timeout", "connect_timeout")

# (body, message id, attempts already used, delay in seconds)
Item = tuple[bytes, str, int, float]


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL for aio-pika, and chute's own options taken out of its query string."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigurationError(f"not an AMQP URL: {redact_url(url)!r} (use amqp:// or amqps://)")
    kept: list[tuple[str, str]] = []
    ours: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            ours[key] = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), ours


def _seconds(name: str, value: float | str | None, default: float | None) -> float | None:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}") from None
    if not seconds > 0:
        raise ConfigurationError(f"{name} must be more than 0 seconds, not {value!r}")
    return seconds


def _delay_ms(delay: float) -> int:
    if not delay > 0:
        return 0
    # Round up, never down: a delayed message must not arrive early.
    return min(MAX_DELAY_MS, math.ceil(delay * 1000 - 1e-6))


class RabbitBroker:
    """A broker on RabbitMQ 3.10 or later: quorum queues, publisher confirms, native delays.

    Both ack modes. ``ON_COMPLETION`` holds a delivery unacknowledged until it is settled; the
    server takes it back (``attempt`` raised) when the consumer's connection is lost.
    ``ON_RECEIPT`` removes a message from the server as it is handed out.

    Args:
        url: ``amqp://user:password@host:5672/vhost`` or ``amqps://…``. aio-pika's query
            options (``heartbeat``, ``connection_timeout``, TLS files, …) pass through; chute's
            own options below may be given in the query string too.
        consumer_timeout: seconds a delivery may stay unacknowledged before RabbitMQ takes it
            back (its ``consumer_timeout``). On RabbitMQ 3.11.15 and later chute sets it per
            consumer, to this value or, when ``None``, about 24.8 days, so long jobs are not
            cut short. Older servers apply their own server-wide value and cannot change it per
            consumer: there ``ON_COMPLETION`` consumers refuse to start until you state that
            value here, after raising it in ``rabbitmq.conf`` if your jobs need longer.
        connect_timeout: seconds one connection attempt may take.

    Raises:
        ConfigurationError: the URL is not an AMQP URL or an option is not a valid number.
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@localhost:5672/",
        *,
        consumer_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.url = url
        clean, options = _split_url(url)
        self.consumer_timeout = _seconds(
            "consumer_timeout",
            consumer_timeout if consumer_timeout is not None else options.get("consumer_timeout"),
            None,
        )
        timeout = _seconds(
            "connect_timeout",
            connect_timeout if connect_timeout is not None else options.get("connect_timeout"),
            10.0,
        )
        assert timeout is not None
        self.link = Link(clean, connect_timeout=timeout)
        self.topology = Topology(self.link)
        self.consumers: set[Consumer] = set()

    def __repr__(self) -> str:
        return f"RabbitBroker({redact_url(self.url)!r})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            acks=frozenset({Ack.ON_RECEIPT, Ack.ON_COMPLETION}),
            max_delay=MAX_DELAY_MS / 1000,
            max_body=MAX_BODY,
            ordered=True,
            persistent=True,
            shared=True,
            lease_expiry=False,
        )

    async def __aenter__(self) -> Self:
        self.link.closed = False
        await self.link.connection()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Acks are written to the socket as they are made; a graceful close delivers them.
        self.consumers.clear()
        await self.link.close()

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        if messages:
            await self.send(queue, [(m.body, uuid.uuid4().hex, 0, m.delay) for m in messages])

    async def send(self, queue: str, items: Sequence[Item]) -> None:
        """Publish ``items`` to ``queue`` and wait for the server's confirms.

        Messages the server returns as unroutable (the queue or its ladder was deleted
        meanwhile) were not stored, so they are sent once more after declaring again.
        """
        returned = await self._send_once(queue, items)
        if returned:
            self.topology.forget(queue)
            returned = await self._send_once(queue, returned)
        if returned:
            raise BrokerError(
                f"RabbitMQ at {self.link.shown}, queue {queue!r}: {len(returned)} message(s) "
                "could not be routed to the queue"
            )

    async def _send_once(self, queue: str, items: Sequence[Item]) -> list[Item]:
        top = max(_delay_ms(item[3]) for item in items).bit_length() - 1
        await self.topology.declare(queue)
        if top >= 0:
            await self.topology.ladder(queue, top)
        channel = await self.link.publisher()
        with self.link.errors(queue, "publishing"):
            results = await asyncio.gather(
                *(self._publish_one(channel, queue, item) for item in items),
                return_exceptions=True,
            )
        returned: list[Item] = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                with self.link.errors(queue, "publishing"):
                    raise result
            if not result:
                returned.append(item)
        return returned

    async def _publish_one(self, channel: Channel, queue: str, item: Item) -> bool:
        """Publish one message; ``False`` if the server returned it as unroutable."""
        body, message_id, attempts, delay = item
        ms = _delay_ms(delay)
        exchange, key = delay_route(queue, ms) if ms else ("", queue)
        headers: FieldTable | None = {ATTEMPTS_HEADER: attempts} if attempts else None
        properties = spec.Basic.Properties(delivery_mode=2, message_id=message_id, headers=headers)
        # The concrete channel takes wait=False: confirms are awaited, not each socket write.
        confirm = await cast(aiormq.Channel, channel).basic_publish(
            body,
            exchange=exchange,
            routing_key=key,
            properties=properties,
            mandatory=True,
            wait=False,
        )
        if isinstance(confirm, aiormq.abc.DeliveredMessage):
            return False
        if not isinstance(confirm, spec.Basic.Ack):
            raise BrokerError(
                f"RabbitMQ at {self.link.shown}, queue {queue!r}: the server refused to store "
                f"a message ({confirm!r})"
            )
        return True

    # -- consuming -------------------------------------------------------------------------

    def _consumer_arguments(self, queue: str) -> dict[str, Any] | None:
        if self.link.version >= PER_CONSUMER_TIMEOUT:
            ms = (
                LONGEST_CONSUMER_TIMEOUT_MS
                if self.consumer_timeout is None
                else math.ceil(self.consumer_timeout * 1000)
            )
            return {"x-consumer-timeout": ms}
        if self.consumer_timeout is None:
            raise BrokerConfigConflict(
                f"RabbitMQ {self.link.version_text} at {self.link.shown}, queue {queue!r}: "
                "this server applies its server-wide consumer_timeout (30 minutes unless "
                "changed) to every unacknowledged delivery and, before 3.11.15, cannot lift it "
                "per consumer, so a job running longer would be handed to another worker while "
                "it still runs. Fix: upgrade RabbitMQ to 3.12 or later (chute then lifts the "
                "limit per consumer), or set consumer_timeout in rabbitmq.conf (milliseconds) "
                "high enough for your longest job and state it to chute in seconds with "
                "RabbitBroker(url, consumer_timeout=...) or ?consumer_timeout=... in the URL."
            )
        return None

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncGenerator[AsyncIterator[RabbitDelivery]]:
        # Leases last as long as the consumer's connection: there is no clock to set.
        del lease
        await self.link.connection()
        arguments = self._consumer_arguments(queue) if ack is Ack.ON_COMPLETION else None
        consumer: Consumer = (
            PushConsumer(self, queue, prefetch, arguments)
            if ack is Ack.ON_COMPLETION
            else PullConsumer(self, queue, prefetch)
        )
        await consumer.open()
        self.consumers.add(consumer)
        try:
            yield consumer.deliveries()
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.close()

    # -- counting and purging --------------------------------------------------------------

    async def stats(self, queue: str) -> QueueStats:
        ready = await self.topology.ready(queue)
        delayed = sum(await self.topology.ladder_counts(queue))
        dead = await self.topology.ready(dead_queue(queue))
        # AMQP 0-9-1 does not report unacknowledged counts: these are this broker's own.
        in_flight = sum(c.held for c in self.consumers if c.queue == queue)
        return QueueStats(ready=ready, delayed=delayed, in_flight=in_flight, dead=dead)

    async def purge(self, queue: str) -> int:
        purged = await self.topology.ready(queue, purge=True)
        return purged + sum(await self.topology.ladder_counts(queue, purge=True))
