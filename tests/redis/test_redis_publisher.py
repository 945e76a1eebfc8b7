"""The pipelined connection that carries publishes: shared, matched, replaced, bounded."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex
from _redis_harness import PrivateRedis, kill_clients  # pyright: ignore[reportMissingImports]

from chute.broker import Outgoing, QueueStats
from chute.errors import BrokerUnavailable
from chute.testing._tools import eventually  # pyright: ignore[reportPrivateUsage]
from chute_redis import RedisBroker, _publisher
from chute_redis._publisher import Publisher

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[str]:
    name = f"rp{uuid.uuid4().hex[:10]}"
    yield name
    async with aioredis.Redis.from_url(redis_url) as r:
        await r.delete(*RedisBroker(redis_url).keys(name).all())


def publisher_of(broker: RedisBroker) -> Publisher:
    publisher = broker._publisher  # pyright: ignore[reportPrivateUsage]
    assert publisher is not None
    return publisher


async def connections_named(url: str, name: str) -> int:
    async with aioredis.Redis.from_url(url) as r:
        return len([c for c in await r.client_list() if c.get("name") == name])


async def test_concurrent_publishes_share_one_connection(redis_url: str, queue: str) -> None:
    async with RedisBroker(redis_url) as broker:
        before = await connections_named(redis_url, broker.client_name)
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(broker.publish, queue, [Outgoing(b"%d" % i)])
        assert (await broker.stats(queue)).ready == 1000
        # One pipelined connection joined the pool's, however many publishes overlapped.
        assert await connections_named(redis_url, broker.client_name) == before + 1


async def test_replies_stay_matched_to_their_commands_after_a_cancelled_call(
    redis_url: str,
) -> None:
    async with RedisBroker(redis_url) as broker:
        publisher = publisher_of(broker)
        assert await publisher.call(("PING",)) == b"PONG"
        with anyio.CancelScope() as scope:
            scope.cancel()  # lands at the wait for the reply, after the command was written
            await publisher.call(("ECHO", "abandoned"))
        results: dict[int, object] = {}

        async def echo(i: int) -> None:
            results[i] = await publisher.call(("ECHO", f"reply {i}"))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(echo, i)
        assert results == {i: f"reply {i}".encode() for i in range(200)}


async def test_a_killed_connection_is_replaced_before_the_next_publish(
    redis_url: str, queue: str
) -> None:
    async with RedisBroker(redis_url) as broker:
        await broker.publish(queue, [Outgoing(b"before")])
        protocol = publisher_of(broker)._protocol  # pyright: ignore[reportPrivateUsage]
        assert protocol is not None
        assert await kill_clients(redis_url, broker.client_name) >= 1

        async def close_read() -> bool:
            return protocol.lost is not None

        await eventually(close_read, 10, "the event loop reading the server's close")
        await broker.publish(queue, [Outgoing(b"after")])
        assert (await broker.stats(queue)).ready == 2


async def test_a_frozen_server_fails_the_publish_within_the_socket_timeout(
    private_redis: PrivateRedis,
) -> None:
    assert private_redis.proc is not None
    async with RedisBroker(private_redis.url, socket_timeout=0.5) as broker:
        await broker.publish("q", [Outgoing(b"before")])
        private_redis.proc.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="Timeout"):
                await broker.publish("q", [Outgoing(b"frozen")])
            assert time.monotonic() - start < 3
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        await broker.publish("q", [Outgoing(b"after")])
        # The frozen publish may or may not have run once the server woke: never twice.
        stats = await broker.stats("q")
        assert stats.ready in (2, 3), stats
        assert stats == QueueStats(stats.ready, 0, 0, 0)


@pytest.mark.parametrize("protocol", [2, 3])
async def test_replies_larger_than_one_read_are_reassembled(
    redis_url: str, queue: str, protocol: int
) -> None:
    sep = "&" if "?" in redis_url else "?"
    async with RedisBroker(f"{redis_url}{sep}protocol={protocol}") as broker:
        await broker.publish(queue, [Outgoing(b"on RESP%d" % protocol)])
        publisher = publisher_of(broker)
        big = bytes(range(256)) * 8192  # 2 MiB, arriving in many reads
        key = f"{{{queue}}}:big"
        try:
            assert await publisher.call(("SET", key, big)) == b"OK"
            assert await publisher.call(("GET", key)) == big
            assert await publisher.call(("MGET", key, key + "x")) == [big, None]
            assert await publisher.call(("GET", key + "x")) is None
            assert (await broker.stats(queue)).ready == 1
        finally:
            await broker.client.delete(key)


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"+OK\r\n", b"OK"),
        (b":-7\r\n", -7),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"_\r\n", None),
        (b"#t\r\n", True),
        (b",1.5\r\n", 1.5),
        (b"(12345678901234567890\r\n", 12345678901234567890),
        (b"=7\r\ntxt:abc\r\n", b"abc"),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [b"a", [1]]),
        (b"%1\r\n+k\r\n~2\r\n:1\r\n:2\r\n", {b"k": [1, 2]}),
        (b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n", b"hi"),
    ],
)
def test_every_reply_type_parses(wire: bytes, value: object) -> None:
    assert _publisher._parse(bytearray(wire), 0) == (value, len(wire))  # pyright: ignore[reportPrivateUsage]
    with pytest.raises(_publisher._Incomplete):  # pyright: ignore[reportPrivateUsage]
        _publisher._parse(bytearray(wire[:-1]), 0)  # pyright: ignore[reportPrivateUsage]


def test_errors_and_pushes_answer_in_place() -> None:
    protocol = _publisher._Protocol()  # pyright: ignore[reportPrivateUsage]
    loop = asyncio.new_event_loop()
    try:
        first, second = loop.create_future(), loop.create_future()
        protocol.waiting.extend([first, second])
        # A push message in between answers nothing; a reply split across reads waits.
        protocol.data_received(b"-NOSCRIPT No matching script\r\n>2\r\n+inv\r\n*0\r\n$3\r\nab")
        assert isinstance(first.exception(), rex.NoScriptError)
        assert not second.done()
        protocol.data_received(b"c\r\n")
        assert second.result() == b"abc"
    finally:
        loop.close()
