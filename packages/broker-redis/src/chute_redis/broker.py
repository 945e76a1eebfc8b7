"""The Redis broker."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

import anyio
import redis.asyncio as aioredis

from chute.broker import Ack, Capabilities, Outgoing, QueueStats, dead_queue
from chute.errors import BrokerError, ConfigurationError
from chute.plugins import redact_url
from chute_redis._client import (
    Arg,
    Client,
    check_server,
    make_client,
    new_client_name,
    run_script,
    split_url,
    translated,
)
from chute_redis._consumer import Consumer
from chute_redis._delivery import RedisDelivery
from chute_redis._publisher import Publisher
from chute_redis._scripts import PUBLISH, PURGE, STATS, Keys

__all__ = ["RedisBroker"]

# Messages per publish script call: large enough to amortise the round trip, small enough
# that one call never blocks the server for long.
_PUBLISH_CHUNK = 2000


_CAPABILITIES = Capabilities(
    acks=frozenset({Ack.ON_RECEIPT, Ack.ON_COMPLETION}),
    max_delay=None,
    max_body=None,
    ordered=True,
    persistent=True,
    shared=True,
    lease_expiry=True,
)


class RedisBroker:
    """A chute broker on Redis (6.2 or later), in both ack modes, with native delays.

    Args:
        url: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` for TLS, or
            ``unix:///path/to/redis.sock[?db=N]``. Query options are passed to redis-py
            (``socket_keepalive``, ``ssl_cert_reqs``, ...), except ``prefix``, chute's own.
        prefix: the first part of every key name (``{prefix:queue}:ready``...), so several
            applications can share one database. A ``prefix`` in the URL wins.
        cluster: the URL names a node of a Redis Cluster (also ``?cluster=true``); every
            queue then lives in one hash slot.
        socket_timeout: seconds any single command may take before the connection is
            treated as lost. Nothing chute sends blocks on the server, so this is only
            a bound on a hung connection.
        connect_timeout: seconds to wait for a connection to open.

    Raises:
        ConfigurationError: the URL is not a Redis URL.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "chute",
        cluster: bool = False,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        base, own = split_url(url)
        if not base.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"not a Redis URL: {redact_url(url)!r} (use redis://, rediss:// or unix://)"
            )
        self.prefix = own.get("prefix") or prefix
        self.cluster = cluster or own.get("cluster", "").lower() in ("1", "true", "yes")
        if self.cluster and base.startswith("unix://"):
            raise ConfigurationError("a Redis Cluster is reached over TCP, not a unix socket")
        self._base_url = base
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self.client_name = new_client_name()
        """The ``CLIENT SETNAME`` of every connection this broker opens."""
        self._client: Client | None = None
        self._publisher: Publisher | None = None
        self._consumers: set[Consumer] = set()

    def __repr__(self) -> str:
        return f"RedisBroker({redact_url(self.url)!r})"

    @property
    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    @property
    def client(self) -> Client:
        """The redis-py client, once connected."""
        if self._client is None:
            raise BrokerError(f"{self!r} is not connected (use `async with`)")
        return self._client

    async def __aenter__(self) -> Self:
        """Connect, check the server version, load the scripts.

        Logs a warning when the server's ``maxmemory-policy`` may evict queue keys.

        Raises:
            BrokerUnavailable: Redis does not answer.
            BrokerError: Redis is older than 6.2.
        """
        if self._client is None:
            client = make_client(
                self._base_url,
                cluster=self.cluster,
                client_name=self.client_name,
                socket_timeout=self._socket_timeout,
                connect_timeout=self._connect_timeout,
            )
            try:
                await check_server(client, self.url)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
                raise
            self._client = client
            if isinstance(client, aioredis.Redis):
                pool: aioredis.ConnectionPool = client.connection_pool
                self._publisher = Publisher(pool, self._socket_timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Send every queued settlement, then close the connections."""
        client = self._client
        errors: list[BrokerError] = []
        if client is None:
            return
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        with anyio.CancelScope(shield=True):
            for consumer in list(self._consumers):
                try:
                    await consumer.flush()
                except BrokerError as err:
                    errors.append(err)
            self._client = None
            await client.aclose()
        if errors:
            raise errors[0]

    def keys(self, queue: str) -> Keys:
        """The names of the Redis keys that hold ``queue``."""
        return Keys.of(self.prefix, queue)

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Store ``messages`` in ``queue``, up to 2,000 per script call.

        Each call is atomic; a failure part-way through a large batch leaves the chunks
        already sent stored. A call is never repeated, so nothing is stored twice.

        Raises:
            BrokerUnavailable: Redis could not be reached.
            BrokerError: Redis refused the messages (out of memory, say).
        """
        if not messages:
            return
        client, k = self.client, self.keys(queue)
        send = self._publisher.call if self._publisher is not None else None
        keys = [k.ready, k.delayed, k.seq]
        with translated(self.url, queue):
            for start in range(0, len(messages), _PUBLISH_CHUNK):
                chunk = messages[start : start + _PUBLISH_CHUNK]
                args: list[Arg] = [k.channel]
                if any(m.delay > 0 for m in chunk):
                    args.append("1")
                    for m in chunk:
                        args += (max(0.0, m.delay * 1000), m.body)
                else:
                    args.append("0")
                    args += [m.body for m in chunk]
                await run_script(client, PUBLISH, keys, args, send)

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncGenerator[AsyncIterator[RedisDelivery]]:
        """Receive from ``queue``; see :meth:`chute.broker.Broker.consume`.

        One script call per round trip settles what was queued and claims up to the free
        prefetch; an idle consumer waits on a wake-up channel, costing Redis nothing.
        """
        consumer = Consumer(self, queue, ack, prefetch, lease)
        self.client  # noqa: B018 - fail now, not in the background, when not connected
        self._consumers.add(consumer)
        consumer.start()
        try:
            yield consumer.deliveries()
        finally:
            self._consumers.discard(consumer)
            with anyio.CancelScope(shield=True):
                await consumer.stop()
                await consumer.close()

    async def stats(self, queue: str) -> QueueStats:
        """Counts from the server's clock; messages whose lease lapsed count as ready."""
        client, k, d = self.client, self.keys(queue), self.keys(dead_queue(queue))
        with translated(self.url, queue):
            ready, delayed, in_flight = await run_script(
                client, STATS, [k.ready, k.delayed, k.leased], []
            )
            async with client.pipeline(transaction=False) as pipe:
                pipe.llen(d.ready)
                pipe.zcard(d.delayed)
                pipe.zcard(d.leased)
                dead: list[int] = await pipe.execute()
        return QueueStats(int(ready), int(delayed), int(in_flight), sum(dead))

    async def purge(self, queue: str) -> int:
        """Remove every ready and delayed message, and those whose lease lapsed."""
        k = self.keys(queue)
        with translated(self.url, queue):
            return int(
                await run_script(self.client, PURGE, [k.ready, k.delayed, k.leased, k.held], [])
            )
