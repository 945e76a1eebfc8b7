"""What the Redis broker promises beyond the conformance suite, against real servers."""

from __future__ import annotations

import logging
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis
from _redis_harness import PrivateRedis, kill_clients  # pyright: ignore[reportMissingImports]
from redis.crc import key_slot

from chute.broker import Ack, Outgoing, QueueStats, dead_queue
from chute.errors import (
    BrokerConfigConflict,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
)
from chute.testing._tools import eventually, reading  # pyright: ignore[reportPrivateUsage]
from chute_redis import RedisBroker, _consumer
from chute_redis._client import run_script
from chute_redis._scripts import Script

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

MODES = pytest.mark.parametrize(
    "ack", [Ack.ON_RECEIPT, Ack.ON_COMPLETION], ids=["receipt", "completion"]
)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[str]:
    name = f"rt{uuid.uuid4().hex[:10]}"
    yield name
    async with aioredis.Redis.from_url(redis_url) as r:
        for q in (name, dead_queue(name)):
            await r.delete(*RedisBroker(redis_url).keys(q).all())


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(redis_url) as b:
        yield b


async def keys_on_server(broker: RedisBroker, queue: str) -> set[str]:
    tag = broker.keys(queue).ready.rpartition(":")[0]
    return {k.decode() async for k in broker.client.scan_iter(match=f"{tag}:*")}


def consumer_of(broker: RedisBroker, queue: str) -> object:
    (consumer,) = [c for c in broker._consumers if c.queue == queue]  # pyright: ignore[reportPrivateUsage]
    return consumer


@MODES
async def test_settled_messages_leave_no_residue(broker: RedisBroker, queue: str, ack: Ack) -> None:
    await broker.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(40)])
    await broker.publish(queue, [Outgoing(b"later", delay=0.3)])
    done = 0
    async with reading(broker, queue, ack=ack, prefetch=10, lease=30) as inbox:
        while done < 41:
            delivery = await inbox.get(10)
            if delivery.attempt == 1 and delivery.body in (b"m1", b"m2"):
                await delivery.retry(0.1)
            elif delivery.attempt == 1 and delivery.body == b"m3" and done < 30:
                await delivery.release()
            else:
                await delivery.ack()
                done += 1
    await eventually(
        lambda: _equals(broker.stats(queue), QueueStats(0, 0, 0, 0)), 5, "an empty queue"
    )
    assert await keys_on_server(broker, queue) == {broker.keys(queue).seq}


async def _equals(stats: object, expected: QueueStats) -> bool:
    return await stats == expected  # type: ignore[misc]


async def test_keys_of_a_queue_share_one_cluster_slot(broker: RedisBroker) -> None:
    for queue in ("default", "emails", "a.b.dead", "with{brace}"):
        keys = broker.keys(queue)
        slots = {key_slot(k.encode()) for k in keys.all()}
        assert len(slots) == 1, (queue, keys)


async def test_idle_consumer_costs_almost_nothing_and_wakes_within_milliseconds(
    broker: RedisBroker, queue: str
) -> None:
    latencies: list[float] = []
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=10, lease=30) as inbox:
        consumer = consumer_of(broker, queue)
        await anyio.sleep(0.2)  # let the first claim and the subscription settle
        trips = consumer._claims  # type: ignore[attr-defined]
        await inbox.nothing_for(3.0, "an empty queue delivered something")
        # The idle check runs every 5 s at most; the subscription confirmation adds one.
        assert consumer._claims - trips <= 1  # type: ignore[attr-defined]
        for i in range(20):
            sent = time.monotonic()
            await broker.publish(queue, [Outgoing(f"{i}".encode())])
            arrived, delivery = await inbox.get_timed(5)
            latencies.append(arrived - sent)
            await delivery.ack()
    # A few milliseconds on an idle machine; generous for a loaded one.
    assert statistics.median(latencies) < 0.05, latencies


async def test_short_socket_timeout_causes_no_reconnect_loop(
    redis_url: str, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chute.redis")
    async with (
        RedisBroker(redis_url, socket_timeout=0.2) as broker,
        reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=5, lease=30) as inbox,
    ):
        await inbox.nothing_for(2.0, "an empty queue delivered something")
        await broker.publish(queue, [Outgoing(b"after idling")])
        got = await inbox.get(2)
        assert got.body == b"after idling"
        await got.ack()
        async with aioredis.Redis.from_url(redis_url) as r:
            ours = [c for c in await r.client_list() if c.get("name") == broker.client_name]
        assert len(ours) <= 4, ours
    assert not [r for r in caplog.records if "lost" in r.getMessage()], caplog.text


async def test_acks_queued_across_a_cut_connection_still_land(
    broker: RedisBroker, redis_url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(f"h{i}".encode()) for i in range(5)])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=5, lease=30) as inbox:
        held = await inbox.take(5, 10)
        assert await kill_clients(redis_url, broker.client_name) >= 2
        for delivery in held:
            await delivery.ack()
        await eventually(
            lambda: _equals(broker.stats(queue), QueueStats(0, 0, 0, 0)),
            10,
            "every held message acked after the reconnect",
        )
        await inbox.nothing_for(1.0, "an acked message came back")


async def test_lease_extensions_are_coalesced_into_one_round_trip(
    broker: RedisBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(f"x{i}".encode()) for i in range(50)])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=50, lease=2) as inbox:
        held = await inbox.take(50, 10)
        consumer = consumer_of(broker, queue)
        trips = consumer._claims  # type: ignore[attr-defined]
        async with anyio.create_task_group() as tg:
            for delivery in held:
                tg.start_soon(delivery.extend, 30)
        await eventually(
            lambda: _true(not consumer.ops),
            5,
            "the extensions sent",  # type: ignore[attr-defined]
        )
        assert consumer._claims - trips <= 2  # type: ignore[attr-defined]
        async with (
            RedisBroker(broker.url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=50, lease=30) as thief,
        ):
            await thief.nothing_for(3.0, "a message came back although its lease was extended")
        for delivery in held:
            await delivery.ack()


async def _true(value: bool) -> bool:
    return value


async def test_a_key_of_another_type_is_a_config_conflict(broker: RedisBroker, queue: str) -> None:
    await broker.client.set(broker.keys(queue).ready, "not a list")
    with pytest.raises(BrokerConfigConflict, match=queue):
        await broker.publish(queue, [Outgoing(b"x")])


async def test_unreachable_server_is_named_without_its_password() -> None:
    broker = RedisBroker("redis://:s3cret@127.0.0.1:1/0", connect_timeout=1)
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.__aenter__()
    assert "s3cret" not in str(caught.value)
    assert "redis://:***@127.0.0.1:1/0" in str(caught.value)


def test_only_redis_urls_are_accepted() -> None:
    with pytest.raises(ConfigurationError):
        RedisBroker("amqp://localhost")


async def test_prefix_from_the_url_names_the_keys(redis_url: str, queue: str) -> None:
    sep = "&" if "?" in redis_url else "?"
    async with RedisBroker(f"{redis_url}{sep}prefix=other") as broker:
        assert broker.keys(queue).ready == f"{{other:{queue}}}:ready"
        await broker.publish(queue, [Outgoing(b"x")])
        try:
            assert await broker.client.llen(broker.keys(queue).ready) == 1
        finally:
            await broker.client.delete(*broker.keys(queue).all())


async def test_a_large_batch_is_stored_whole_and_in_order(broker: RedisBroker, queue: str) -> None:
    bodies = [f"{i:05d}".encode() for i in range(5000)]
    await broker.publish(queue, [Outgoing(b) for b in bodies])
    got: list[bytes] = []
    async with reading(broker, queue, ack=Ack.ON_RECEIPT, prefetch=500, lease=30) as inbox:
        for _ in bodies:
            delivery = await inbox.get(10)
            got.append(delivery.body)
            await delivery.ack()
    assert got == bodies


async def test_unix_socket_url(private_redis: PrivateRedis) -> None:
    async with RedisBroker(private_redis.url) as broker:
        await broker.publish("q", [Outgoing(b"over a socket")])
        async with reading(broker, "q", ack=Ack.ON_COMPLETION, prefetch=1, lease=30) as inbox:
            got = await inbox.get(5)
            assert got.body == b"over a socket"
            await got.ack()


@pytest.mark.parametrize(
    ("policy", "warns"),
    [("allkeys-lru", True), ("allkeys-random", True), ("volatile-lru", False),
     ("noeviction", False)],
)  # fmt: skip
async def test_warns_when_the_server_may_evict_queue_keys(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture, policy: str, warns: bool
) -> None:
    async with aioredis.Redis.from_url(private_redis.url) as r:
        await r.config_set("maxmemory-policy", policy)
    caplog.set_level(logging.WARNING, logger="chute.redis")
    async with RedisBroker(private_redis.url):
        pass
    warned = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert bool(warned) is warns, caplog.text
    if warns:
        assert policy in warned[0].getMessage()


async def test_scripts_are_loaded_again_after_a_script_flush(private_redis: PrivateRedis) -> None:
    async with RedisBroker(private_redis.url) as broker:
        await broker.client.script_flush()
        await broker.publish("q", [Outgoing(b"after flush")])
        async with reading(broker, "q", ack=Ack.ON_COMPLETION, prefetch=1, lease=30) as inbox:
            got = await inbox.get(5)
            await got.ack()
        probe = Script("probe", f"return '{uuid.uuid4().hex}'")
        assert await run_script(broker.client, probe, [], []) == probe.source[8:-1].encode()


async def test_consumer_comes_back_after_a_server_restart(private_redis: PrivateRedis) -> None:
    async with (
        RedisBroker(private_redis.url) as broker,
        reading(broker, "q", ack=Ack.ON_COMPLETION, prefetch=5, lease=30) as inbox,
    ):
        await broker.publish("q", [Outgoing(b"before")])
        got = await inbox.get(5)
        await got.ack()
        private_redis.stop()
        await anyio.sleep(0.5)  # the consumer meets the outage, with nothing to wait for
        private_redis.start()
        # Publishing may need a moment while the pool notices the new server.
        with anyio.fail_after(10):
            while True:
                try:
                    await broker.publish("q", [Outgoing(b"after")])
                    break
                except BrokerUnavailable:
                    await anyio.sleep(0.1)
        got = await inbox.get(10, "the message published after the restart")
        assert got.body == b"after"
        await got.ack()


async def lapsed(broker: RedisBroker, queue: str) -> bool:
    stats = await broker.stats(queue)
    return stats.in_flight == 0 and stats.ready == 1


async def test_an_ack_after_the_lease_lapsed_still_counts_if_nobody_reclaimed(
    broker: RedisBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"late")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=0.3) as inbox:
        held = await inbox.get(5)
        await eventually(lambda: lapsed(broker, queue), 5, "the lease lapsing")
        await held.ack()
    await eventually(
        lambda: _equals(broker.stats(queue), QueueStats(0, 0, 0, 0)), 5, "the late ack landing"
    )


async def test_extending_a_lapsed_lease_does_not_revive_it(broker: RedisBroker, queue: str) -> None:
    await broker.publish(queue, [Outgoing(b"lapsed")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=0.3) as inbox:
        held = await inbox.get(5)
        await eventually(lambda: lapsed(broker, queue), 5, "the lease lapsing")
        await held.extend(60)
        async with (
            RedisBroker(broker.url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as thief,
        ):
            again = await thief.get(5, "the message whose lease lapsed")
            assert again.attempt == 2
            await again.ack()


@MODES
async def test_closing_gives_back_buffered_messages_in_order(
    broker: RedisBroker, queue: str, ack: Ack
) -> None:
    bodies = [f"o{i}".encode() for i in range(10)]
    await broker.publish(queue, [Outgoing(b) for b in bodies])
    async with broker.consume(queue, ack=ack, prefetch=10, lease=60) as deliveries:
        first = await anext(deliveries)
        assert first.body == b"o0"
        await first.ack()
        # The other nine were claimed with it and wait, unyielded, in the consumer.
    async with reading(broker, queue, ack=ack, prefetch=10, lease=60) as inbox:
        again = await inbox.take(9, 5)
        for delivery in again:
            await delivery.ack()
    assert [d.body for d in again] == bodies[1:]
    assert all(d.attempt == 1 for d in again)


async def test_a_publish_refused_for_memory_raises_and_stores_nothing(
    private_redis: PrivateRedis,
) -> None:
    async with RedisBroker(private_redis.url) as broker:
        await broker.client.config_set("maxmemory", 1)
        try:
            with pytest.raises(BrokerError, match="maxmemory") as caught:
                await broker.publish("q", [Outgoing(b"no room")])
            assert not isinstance(caught.value, BrokerUnavailable)
        finally:
            await broker.client.config_set("maxmemory", 0)
        assert await broker.stats("q") == QueueStats(0, 0, 0, 0)


async def test_a_key_of_another_type_stops_the_consumer_with_a_config_conflict(
    broker: RedisBroker, queue: str
) -> None:
    await broker.client.set(broker.keys(queue).leased, "not a sorted set")
    with pytest.raises(BrokerConfigConflict, match=queue):
        async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=30) as it:
            await anext(it)


async def test_a_silent_wake_up_link_is_pinged_and_replaced(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_consumer, "PING_EVERY", 0.3)
    caplog.set_level(logging.WARNING, logger="chute.redis")
    assert private_redis.proc is not None
    async with (
        RedisBroker(private_redis.url, socket_timeout=2) as broker,
        reading(broker, "q", ack=Ack.ON_COMPLETION, prefetch=1, lease=30) as inbox,
    ):
        # A frozen server keeps its connections open but answers nothing, like a dead peer.
        private_redis.proc.send_signal(signal.SIGSTOP)
        try:
            await eventually(
                lambda: _true("no answer to PING" in caplog.text), 10, "the ping going unanswered"
            )
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        with anyio.fail_after(15):
            while True:
                try:
                    await broker.publish("q", [Outgoing(b"awake")])
                    break
                except BrokerUnavailable:
                    await anyio.sleep(0.1)
        got = await inbox.get(15, "the message published after the freeze")
        assert got.body == b"awake"
        await got.ack()
