"""RabbitMQ-specific behaviour, against the real server: options, errors, delays, recovery."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import anyio
import pytest
from rabbitmq_server import SERVER_CONSUMER_TIMEOUT, cut, delete_queues, rabbitmqctl, with_options

import chute_rabbitmq
from chute.broker import Ack, Outgoing, QueueStats, dead_queue
from chute.errors import BrokerConfigConflict, BrokerError, BrokerUnavailable, ConfigurationError
from chute.plugins import broker_from_url
from chute.testing._tools import reading
from chute_rabbitmq import RabbitBroker
from chute_rabbitmq._broker import LONGEST_CONSUMER_TIMEOUT_MS, PER_CONSUMER_TIMEOUT
from chute_rabbitmq._consumer import IDLE_CHECK
from chute_rabbitmq._topology import level_exchange, level_queue

pytestmark = [pytest.mark.rabbitmq, pytest.mark.anyio]

TOLERANCE = 4.0


@pytest.fixture
def url(rabbitmq_url: str) -> str:
    return with_options(rabbitmq_url, consumer_timeout=SERVER_CONSUMER_TIMEOUT)


@pytest.fixture
async def queue(rabbitmq_url: str) -> AsyncIterator[str]:
    name = f"rt{uuid.uuid4().hex[:12]}"
    yield name
    await delete_queues(rabbitmq_url, [name, dead_queue(name)])


@pytest.fixture
async def broker(url: str) -> AsyncIterator[RabbitBroker]:
    async with RabbitBroker(url) as broker:
        yield broker


async def declare_raw(url: str, name: str, arguments: dict[str, object] | None) -> None:
    conn = await aio_pika.connect(url.split("?", 1)[0])
    try:
        channel = await conn.channel()
        await channel.declare_queue(name, durable=True, arguments=arguments)  # type: ignore[arg-type]
    finally:
        await conn.close()


def test_public_names_are_sorted_and_exported() -> None:
    assert chute_rabbitmq.__all__ == sorted(chute_rabbitmq.__all__)
    for name in chute_rabbitmq.__all__:
        assert getattr(chute_rabbitmq, name) is not None


def test_both_schemes_resolve_through_the_entry_points() -> None:
    for scheme in ("amqp", "amqps"):
        broker = broker_from_url(f"{scheme}://guest:guest@localhost:5672/")
        assert isinstance(broker, RabbitBroker)


def test_options_come_from_the_url_or_keywords_and_stay_out_of_the_amqp_url() -> None:
    broker = RabbitBroker("amqp://u:p@h:5672/v?heartbeat=15&consumer_timeout=90&connect_timeout=3")
    assert broker.consumer_timeout == 90
    assert broker.link.connect_timeout == 3
    assert "consumer_timeout" not in broker.link.url
    assert "connect_timeout" not in broker.link.url
    assert "heartbeat=15" in broker.link.url
    assert RabbitBroker("amqp://h/?consumer_timeout=90", consumer_timeout=5).consumer_timeout == 5
    assert "p@" not in repr(broker)
    with pytest.raises(ConfigurationError, match="consumer_timeout"):
        RabbitBroker("amqp://h/?consumer_timeout=soon")
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        RabbitBroker("amqp://h/", connect_timeout=0)
    with pytest.raises(ConfigurationError, match="amqp://"):
        RabbitBroker("redis://h/")


async def test_unreachable_server_names_the_url_without_its_password() -> None:
    broker = RabbitBroker("amqp://guest:s3cret@127.0.0.1:1/", connect_timeout=3)
    with pytest.raises(BrokerUnavailable) as info:
        async with broker:
            pass
    assert "s3cret" not in str(info.value)
    assert "guest:***@127.0.0.1:1" in str(info.value)


@pytest.mark.parametrize(
    ("existing", "differs"),
    [
        ({"x-queue-type": "classic"}, "x-queue-type"),
        ({"x-queue-type": "quorum", "x-max-length": 5}, "x-max-length"),
    ],
    ids=["classic-queue", "extra-argument"],
)
async def test_existing_queue_with_other_arguments_is_a_clear_conflict(
    broker: RabbitBroker, rabbitmq_url: str, queue: str, existing: dict[str, object], differs: str
) -> None:
    await declare_raw(rabbitmq_url, queue, existing)
    with pytest.raises(BrokerConfigConflict) as info:
        await broker.publish(queue, [Outgoing(b"x")])
    message = str(info.value)
    assert repr(differs) in message and repr(queue) in message
    assert "delete the queue" in message
    for ack in Ack:
        with pytest.raises(BrokerConfigConflict, match=differs):
            async with broker.consume(queue, ack=ack, prefetch=1, lease=30):
                pass


async def test_old_servers_refuse_completion_consumers_until_the_timeout_is_stated(
    rabbitmq_url: str, queue: str
) -> None:
    async with RabbitBroker(rabbitmq_url) as broker:
        if broker.link.version >= PER_CONSUMER_TIMEOUT:
            pytest.skip(f"RabbitMQ {broker.link.version_text} lifts consumer_timeout per consumer")
        with pytest.raises(BrokerConfigConflict) as info:
            async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=30):
                pass
        message = str(info.value)
        for part in ("consumer_timeout", "rabbitmq.conf", "3.12", repr(queue), "guest:***@"):
            assert part in message
        # At-most-once consumers hold nothing unacknowledged: no limit applies to them.
        await broker.publish(queue, [Outgoing(b"x")])
        async with reading(broker, queue, ack=Ack.ON_RECEIPT, prefetch=1, lease=30) as inbox:
            assert (await inbox.get(TOLERANCE)).body == b"x"


def test_newer_servers_get_the_timeout_per_consumer() -> None:
    # Only the choice of arguments can be checked here; the server under test may be older.
    broker = RabbitBroker("amqp://h/")
    broker.link.version = (3, 12, 0)
    assert broker._consumer_arguments("q") == {"x-consumer-timeout": LONGEST_CONSUMER_TIMEOUT_MS}
    broker.link.version = (3, 11, 15)
    assert broker._consumer_arguments("q") is not None
    stated = RabbitBroker("amqp://h/", consumer_timeout=60)
    stated.link.version = (4, 1, 0)
    assert stated._consumer_arguments("q") == {"x-consumer-timeout": 60_000}
    stated.link.version = (3, 11, 14)
    assert stated._consumer_arguments("q") is None


async def test_mixed_delays_arrive_in_due_order_never_early(
    broker: RabbitBroker, queue: str
) -> None:
    delays = [2.0, 0.3, 1.2, 0.05, 0.7, 1.5, 0.0]
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=10, lease=60) as inbox:
        published = time.monotonic()
        await broker.publish(queue, [Outgoing(f"{d}".encode(), d) for d in delays[:4]])
        await broker.publish(queue, [Outgoing(f"{d}".encode(), d) for d in delays[4:]])
        arrivals: list[tuple[float, float]] = []
        for _ in delays:
            arrived, delivery = await inbox.get_timed(max(delays) + TOLERANCE)
            arrivals.append((arrived - published, float(delivery.body)))
            assert delivery.attempt == 1
            await delivery.ack()
    assert [d for _, d in arrivals] == sorted(delays)
    for took, delay in arrivals:
        assert took >= delay - 0.05, f"a {delay} s delay arrived after {took:.3f} s"
        assert took <= delay + TOLERANCE


async def test_delayed_messages_wait_in_the_ladder_counted_and_purgeable(
    broker: RabbitBroker, rabbitmq_url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"later", 5.0), Outgoing(b"much later", 3600.0)])
    assert await broker.stats(queue) == QueueStats(ready=0, delayed=2, in_flight=0, dead=0)
    # 3600 s = 3,600,000 ms: its highest bit is 2**21, so levels 00..21 exist and no more.
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        await channel.declare_queue(level_queue(queue, 21), passive=True)
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await (await conn.channel()).declare_queue(level_queue(queue, 22), passive=True)
    finally:
        await conn.close()
    other = RabbitBroker(broker.url)  # knows nothing cached: counts what the server holds
    async with other:
        assert (await other.stats(queue)).delayed == 2
        assert await other.purge(queue) == 2
    assert await broker.stats(queue) == QueueStats(0, 0, 0, 0)


async def test_in_flight_counts_only_this_brokers_consumers(
    broker: RabbitBroker, url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"a"), Outgoing(b"b")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
        held = await inbox.get(TOLERANCE)
        assert (await broker.stats(queue)).in_flight == 1
        async with RabbitBroker(url) as other:
            assert await other.stats(queue) == QueueStats(ready=1, delayed=0, in_flight=0, dead=0)
        await held.ack()


async def test_a_cut_connection_fences_stale_settlements_and_recovers(
    broker: RabbitBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(6)])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=3, lease=60) as inbox:
        stale = await inbox.take(3, TOLERANCE)
        for _ in range(2):
            await cut(broker)
        cut_at = time.monotonic()
        # Settling what the dead channel held does nothing and raises nothing: the server
        # already took those messages back.
        await stale[0].ack()
        await stale[1].retry(0)
        await stale[2].release()
        seen: dict[bytes, int] = {}
        while len(seen) < 6:
            delivery = await inbox.get(TOLERANCE * 2, "deliveries after the cut")
            seen[delivery.body] = delivery.attempt
            await delivery.ack()
        assert time.monotonic() - cut_at < TOLERANCE * 2
        for delivery in stale:
            assert seen[delivery.body] == 2, "a message taken back at the cut keeps its count"
        # Still consuming normally afterwards.
        await broker.publish(queue, [Outgoing(b"after")])
        assert (await inbox.get(TOLERANCE)).body == b"after"


@pytest.mark.parametrize("ack", list(Ack), ids=[a.value for a in Ack])
async def test_consumer_recovers_when_its_queue_is_deleted(
    broker: RabbitBroker, rabbitmq_url: str, queue: str, ack: Ack
) -> None:
    async with reading(broker, queue, ack=ack, prefetch=2, lease=60) as inbox:
        await broker.publish(queue, [Outgoing(b"before")])
        await (await inbox.get(TOLERANCE)).ack()
        await delete_queues(rabbitmq_url, [queue])
        # RabbitMQ 3.10 does not cancel consumers of a deleted quorum queue: the idle consumer
        # finds out by itself, declares the queue again and subscribes to it.
        with anyio.fail_after(2 * IDLE_CHECK + TOLERANCE):
            while await consumers_of(rabbitmq_url, queue) < 1:
                await anyio.sleep(0.1)
        await broker.publish(queue, [Outgoing(b"after")])
        delivery = await inbox.get(TOLERANCE)
        assert delivery.body == b"after"
        await delivery.ack()


async def consumers_of(url: str, queue: str) -> int:
    conn = await aio_pika.connect(url.split("?", 1)[0])
    try:
        declared = await (await conn.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count or 0
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        await conn.close()


async def test_a_copy_that_cannot_be_published_puts_the_original_back(
    broker: RabbitBroker, rabbitmq_url: str, queue: str
) -> None:
    later = 1100.0  # 1,100,000 ms: enters the ladder at level 20
    await broker.publish(queue, [Outgoing(b"x", later)])
    await broker.purge(queue)
    await broker.publish(queue, [Outgoing(b"job")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
        first = await inbox.get(TOLERANCE)
        # Break the ladder behind the broker's back: the retry's copy cannot be published.
        # Brokers created later declare it again.
        conn = await aio_pika.connect(rabbitmq_url)
        try:
            await (await conn.channel()).exchange_delete(level_exchange(20))
        finally:
            await conn.close()
        with pytest.raises(BrokerError, match=repr(queue)):
            await first.retry(later)
        again = await inbox.get(TOLERANCE, "the original, put back")
        assert again.body == b"job"
        assert again.attempt == first.attempt + 1
        await again.ack()


async def test_acks_are_flushed_by_a_clean_close(url: str, queue: str) -> None:
    async with RabbitBroker(url) as broker:
        await broker.publish(queue, [Outgoing(f"{i}".encode()) for i in range(50)])
        async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=50, lease=60) as it:
            got = 0
            async for delivery in it:
                await delivery.ack()
                got += 1
                if got == 50:
                    break
    async with RabbitBroker(url) as again:
        assert await again.stats(queue) == QueueStats(0, 0, 0, 0)


@pytest.mark.slow
async def test_the_servers_consumer_timeout_takes_back_and_the_consumer_carries_on(
    url: str, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    # RabbitMQ reads consumer_timeout when a channel opens and checks it about once a minute.
    before = rabbitmqctl("eval", "application:get_env(rabbit, consumer_timeout).").strip()
    rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 1000).")
    try:
        async with RabbitBroker(url) as broker:
            if broker.link.version >= PER_CONSUMER_TIMEOUT:
                pytest.skip("this server lifts consumer_timeout per consumer")
            await broker.publish(queue, [Outgoing(b"slow job")])
            caplog.set_level(logging.ERROR, logger="chute.rabbitmq")
            # prefetch 2: the delivery taken back still counts against the prefetch until the
            # caller settles it, as a lapsed lease does.
            async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=2, lease=60) as i:
                first = await i.get(TOLERANCE)
                again = await i.get(180, "the message the server took back")
                assert again.body == b"slow job"
                assert again.attempt == first.attempt + 1
                await first.ack()  # stale: a no-op, not a channel error
                await again.ack()
            assert await broker.stats(queue) == QueueStats(0, 0, 0, 0)
        assert any("consumer_timeout" in r.getMessage() for r in caplog.records)
    finally:
        if before.startswith("{ok,"):
            value = before.removeprefix("{ok,").removesuffix("}")
            rabbitmqctl("eval", f"application:set_env(rabbit, consumer_timeout, {value}).")
        else:
            rabbitmqctl("eval", "application:unset_env(rabbit, consumer_timeout).")
