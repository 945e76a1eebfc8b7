"""The NATS broker: JetStream work queues by default, core NATS queue groups on request."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio

from chute.broker import Ack, Capabilities, Delivery, Outgoing, QueueStats
from chute.errors import BrokerError
from chute_nats import _core, _setup
from chute_nats._connection import MIN_SERVER, Connection
from chute_nats._jetstream import JsConsumer
from chute_nats._leases import LeaseKeeper
from chute_nats._settings import DEFAULT_URL, DUE, MSG_ID, check_queue, parse

__all__ = ["NatsBroker"]

# Room left in the server's payload limit for the headers chute adds to copies.
_HEADER_ROOM = 1024
# How many stored publishes wait for their confirmation at once.
_WINDOW = 1000


class NatsBroker:
    """A broker on a NATS server: JetStream (stored, both ack modes) or core NATS (push).

    Args:
        url: ``nats://[user:password@]host:4222[,host2:4222][?option=value&...]``, or
            ``tls://...`` for TLS. Options may be given in the query or as keywords
            (keywords win):

            - ``jetstream`` (default ``true``): ``false`` selects core NATS mode, which stores
              nothing: a message published while no consumer listens is lost.
            - ``namespace`` (default ``chute``): the stream is the namespace in capitals,
              its subjects ``<namespace>.q.>`` and ``<namespace>.d.>``.
            - ``ack_wait`` (default ``30``): seconds of the consumers' ack wait, the unit of
              every lease; longer leases are kept with in-progress acks, shorter ones last
              this long. Fixed when a queue's consumer is created.
            - ``replicas`` (default ``1``) and ``storage`` (``file`` or ``memory``): the
              stream's, when this broker creates it.
            - ``name`` (default ``chute``): the connection name the server shows.
            - ``connect_timeout`` (default ``5``), ``request_timeout`` (default ``10``):
              seconds for the first connection and for each server confirmation.
        options: the same options as keywords.

    Raises:
        ConfigurationError: the URL or an option is invalid.
    """

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        self.settings = parse(url, options)
        self.url = url
        self._conn = Connection(self.settings)
        self._keeper = LeaseKeeper(self.settings)
        self._max_payload: int | None = None

    def __repr__(self) -> str:
        return f"NatsBroker({self.settings.safe_url!r})"

    @property
    def capabilities(self) -> Capabilities:
        max_body = (self._max_payload or 1024 * 1024) - _HEADER_ROOM
        if not self.settings.jetstream:
            return Capabilities(
                acks=frozenset({Ack.ON_RECEIPT}),
                max_delay=None,
                max_body=max_body,
                ordered=False,
                persistent=False,
                lease_expiry=False,
            )
        return Capabilities(
            acks=frozenset({Ack.ON_RECEIPT, Ack.ON_COMPLETION}),
            max_delay=None,
            max_body=max_body,
            ordered=True,
            persistent=True,
            lease_expiry=True,
        )

    @property
    def server_version(self) -> tuple[int, int, int]:
        """The connected server's version, as ``(major, minor, patch)``."""
        return self._conn.server_version

    async def __aenter__(self) -> Self:
        await self._conn.open()
        try:
            self._max_payload = self._conn.max_payload
            if self.settings.jetstream:
                version = self._conn.server_version
                if version[:2] < MIN_SERVER:
                    raise BrokerError(
                        f"NATS at {self.settings.safe_url}: server {'.'.join(map(str, version))}"
                        f" is too old; JetStream mode needs {'.'.join(map(str, MIN_SERVER))} "
                        "or newer (or use core NATS with ?jetstream=false)"
                    )
                with self._conn.failures(None, "checking the stream"):
                    await _setup.ensure_stream(self._conn)
                self._keeper.start()
        except BaseException:
            await self._conn.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._keeper.stop()
            await self._conn.close()

    def _check(self, queue: str) -> None:
        check_queue(self.settings, queue)

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        self._check(queue)
        with self._conn.failures(queue, "publishing"):
            if not self.settings.jetstream:
                await _core.publish(self._conn, queue, messages)
                return
            now = time.time()
            for start in range(0, len(messages), _WINDOW):
                window = messages[start : start + _WINDOW]
                await _setup.store_many(self._conn, [self._prepare(queue, m, now) for m in window])

    def _prepare(
        self, queue: str, message: Outgoing, now: float
    ) -> tuple[str, bytes, dict[str, str]]:
        settings = self.settings
        headers: dict[str, str] = {}
        subject = settings.ready_subject(queue)
        if message.delay > 0:
            headers[DUE] = f"{now + message.delay:.6f}"
            subject = settings.delayed_subject(queue)
        if message.key is not None:
            headers[MSG_ID] = f"{queue}:{message.key}"
        return subject, message.body, headers

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncGenerator[AsyncIterator[Delivery]]:
        self._check(queue)
        if ack not in self.capabilities.acks:
            raise BrokerError(
                f"NATS at {self.settings.safe_url}, queue {queue!r}: core NATS mode "
                f"(jetstream=false) supports only ON_RECEIPT, not {ack.name}"
            )
        prefetch = max(1, prefetch)
        consumer: JsConsumer | _core.CoreConsumer
        if self.settings.jetstream:
            consumer = JsConsumer(self._conn, self._keeper, queue, ack, prefetch, lease)
        else:
            consumer = _core.CoreConsumer(self._conn, queue, prefetch)
        try:
            with self._conn.failures(queue, "starting to consume"):
                await consumer.open()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await consumer.close()
            raise
        deliveries = consumer.deliveries()
        try:
            yield deliveries
        finally:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(RuntimeError):  # still being iterated elsewhere
                    await deliveries.aclose()
                await consumer.close()

    async def stats(self, queue: str) -> QueueStats:
        """Counts for ``queue``; all zero in core NATS mode, which stores nothing."""
        self._check(queue)
        if not self.settings.jetstream:
            return QueueStats(0, 0, 0, 0)
        with self._conn.failures(queue, "reading stats"):
            return await _setup.stats(self._conn, queue)

    async def purge(self, queue: str) -> int:
        """Remove ``queue``'s stored messages, leased ones included; ``0`` in core NATS mode."""
        self._check(queue)
        if not self.settings.jetstream:
            return 0
        with self._conn.failures(queue, "purging"):
            return await _setup.purge(self._conn, queue)
