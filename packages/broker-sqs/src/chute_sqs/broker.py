"""The Amazon SQS broker."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio

from chute.broker import Ack, Capabilities, Outgoing, QueueStats, dead_queue
from chute.errors import BrokerError, ConfigurationError
from chute.plugins import redact_url
from chute_sqs._client import PurgeInProgress, SqsClient, check_lease
from chute_sqs._consumer import Consumer, SqsDelivery
from chute_sqs._options import MAX_VISIBILITY, SqsOptions, is_fifo
from chute_sqs._wire import MAX_NATIVE_DELAY, max_body

__all__ = ["SqsBroker"]

log = logging.getLogger("chute_sqs")

_COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
]


class SqsBroker:
    """A broker on Amazon SQS (or anything speaking its API: ElasticMQ, LocalStack, moto).

    Both ack modes: in ``ON_COMPLETION`` the lease is the message's visibility timeout; in
    ``ON_RECEIPT`` a message is deleted as soon as it is received. Native delays up to 15
    minutes (core splits longer ones). Queues whose name ends in ``.fifo`` are SQS FIFO queues.
    Credentials come from the standard AWS chain.

    Args:
        url: ``sqs://?region=...&endpoint=...&prefix=...``; every option below may be given in
            the query string instead of as a keyword.
        **options: override the URL's query: ``region``, ``endpoint`` (for ElasticMQ,
            LocalStack or moto), ``profile``, ``prefix`` (prepended to every SQS queue name,
            default ``chute-``), ``wait`` (long-poll seconds, default 5), ``receivers``
            (parallel receives per consumer, default 4), ``create`` (create missing queues,
            default true), ``retention`` (seconds, for created queues, default 14 days),
            ``max_message_size`` (bytes SQS accepts per message, default 262144), ``group``
            (the MessageGroupId of FIFO queues, default ``chute``).

    Raises:
        ConfigurationError: the URL or an option is not valid.
    """

    def __init__(self, url: str = "sqs://", **options: Any) -> None:
        self.url = url
        self.options = SqsOptions.parse(url, options)
        self._client = SqsClient(self.options, self._describe())

    def _describe(self) -> str:
        opts = self.options
        where = opts.endpoint or "AWS"
        return f"{redact_url(where)} (region {opts.region or 'default'}, prefix {opts.prefix!r})"

    def __repr__(self) -> str:
        return f"SqsBroker({redact_url(self.url)!r})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            acks=frozenset({Ack.ON_RECEIPT, Ack.ON_COMPLETION}),
            max_delay=float(MAX_NATIVE_DELAY),
            max_body=max_body(self.options.max_message_size),
            ordered=False,
            persistent=True,
            shared=True,
            lease_expiry=True,
            # The visibility timeout of one receive ends 12 hours after it, extensions included.
            max_lease=float(MAX_VISIBILITY - 1),
        )

    async def __aenter__(self) -> Self:
        await self._client.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._client.drain()
            await self._client.close()

    def sqs_name(self, queue: str) -> str:
        """The SQS queue name that the chute queue ``queue`` maps to."""
        return self._client.name(queue)

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        fifo = is_fifo(queue)
        entries: list[dict[str, Any]] = []
        for m in messages:
            if fifo and m.delay > 0:
                raise BrokerError(
                    f"SQS queue {queue!r} is a FIFO queue, and SQS FIFO queues take no "
                    "per-message delay"
                )
            entries.append(self._client.entry(queue, m.body, m.delay, m.key, None))
        await self._client.send(queue, entries)

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncGenerator[AsyncIterator[SqsDelivery]]:
        if ack is Ack.ON_COMPLETION:
            check_lease(lease, queue)
        elif is_fifo(queue):
            raise ConfigurationError(
                f"queue {queue!r}: SQS FIFO queues run in ON_COMPLETION mode only (a message "
                "deleted on receipt could not be retried in its place in the group)"
            )
        self._client.name(queue)
        consumer = Consumer(self, queue, ack, max(1, prefetch), lease)
        try:
            yield consumer.deliveries()
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.close()

    async def _counts(self, queue: str) -> list[int]:
        async def get(url: str) -> Any:
            return await self._client.call(
                queue, "get_queue_attributes", QueueUrl=url, AttributeNames=_COUNTS
            )

        found = await self._client.on_queue(queue, get, create=False)
        if found is None:
            return [0, 0, 0]
        attributes = found.get("Attributes", {})
        return [int(attributes.get(name, 0)) for name in _COUNTS]

    async def stats(self, queue: str) -> QueueStats:
        """Counts from SQS's approximate attributes (exact on a quiet queue, otherwise they
        may lag by up to a minute on AWS). A message retried with a delay is invisible in SQS,
        so it counts as ``in_flight``, not ``delayed``."""
        await self._client.drain()
        ready, delayed, invisible = await self._counts(queue)
        dead = sum(await self._counts(dead_queue(queue)))
        return QueueStats(ready=ready, delayed=delayed, in_flight=invisible, dead=dead)

    async def purge(self, queue: str) -> int:
        """PurgeQueue: removes every message, including those in flight (SQS cannot spare
        them); returns the ready and delayed ones counted just before. SQS allows one purge
        per queue every 60 seconds: within that time, ready messages are received and deleted
        instead, and delayed ones stay (SQS hands them to nobody before their time)."""
        ready, delayed, _ = await self._counts(queue)

        async def purge(url: str) -> Any:
            return await self._client.call(queue, "purge_queue", QueueUrl=url)

        try:
            await self._client.on_queue(queue, purge, create=False)
        except PurgeInProgress:
            log.warning("queue %r was purged less than 60 s ago; deleting its ready messages "
                        "one batch at a time (delayed ones stay)", queue)  # fmt: skip
            return await self._drain(queue)
        return ready + delayed

    async def _drain(self, queue: str) -> int:
        removed = 0
        while True:

            async def receive(url: str) -> Any:
                return await self._client.call(
                    queue, "receive_message", QueueUrl=url, MaxNumberOfMessages=10,
                    WaitTimeSeconds=0, VisibilityTimeout=30,
                )  # fmt: skip

            found: dict[str, Any] = await self._client.on_queue(queue, receive, create=False) or {}
            messages: list[dict[str, Any]] = found.get("Messages", [])
            handles: list[str] = [m["ReceiptHandle"] for m in messages]
            if not handles:
                return removed
            removed += len(await self._client.delete_now(queue, handles))
