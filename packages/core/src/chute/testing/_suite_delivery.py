"""Conformance: what every delivery promises, in both ack modes."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio

from chute.broker import Ack, Broker, Delivery, Outgoing, QueueStats, dead_queue
from chute.testing._base import ConformanceBase, requires
from chute.testing._harness import BrokerHarness
from chute.testing._tools import eventually, publish, reading

Connect = Callable[[], AbstractAsyncContextManager[Broker]]
LONG_LEASE = 60.0  # for tests where a lapsed lease must not explain what happens


class DeliveryConformance(ConformanceBase):
    """Round trips, no loss, prefetch, stats, delays, retry, release, close, order."""

    async def test_round_trip_is_byte_exact(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        big = 1 << 20
        if broker.capabilities.max_body is not None:
            big = min(big, broker.capabilities.max_body)
        bodies = [
            b"",
            bytes(range(256)),
            b"\xff\xfe\x00\x80 not utf-8 \xc3\x28",
            os.urandom(big),
        ]
        # Consumer first, so brokers that keep nothing for absent consumers pass too.
        async with reading(broker, queue, ack=ack, prefetch=4, lease=LONG_LEASE) as inbox:
            for body in bodies:
                await broker.publish(queue, [Outgoing(body)])
            got = await inbox.take(len(bodies), harness.tolerance * 2)
            for delivery in got:
                await delivery.ack()
        assert sorted(d.body for d in got) == sorted(bodies)
        assert all(d.attempt == 1 for d in got)

    async def test_no_loss_no_duplicate(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, stress: int
    ) -> None:
        for round_ in range(stress):
            await self._no_loss_round(connect, queue, ack, round_)

    async def _no_loss_round(self, connect: Connect, queue: str, ack: Ack, round_: int) -> None:
        producers, consumers, per_producer = 4, 3, 500
        seen: collections.Counter[bytes] = collections.Counter()
        expected = {f"{round_}:{p}:{i}".encode() for p in range(producers)
                    for i in range(per_producer)}  # fmt: skip
        done = anyio.Event()
        all_ready = anyio.Event()
        ready = 0

        async def produce(p: int) -> None:
            async with connect() as b:
                bodies = [f"{round_}:{p}:{i}".encode() for i in range(per_producer)]
                for start in range(0, per_producer, 50):
                    await publish(b, queue, bodies[start : start + 50])

        async def consume() -> None:
            nonlocal ready
            async with (
                connect() as b,
                reading(b, queue, ack=ack, prefetch=10, lease=LONG_LEASE) as inbox,
            ):
                ready += 1
                if ready == consumers:
                    all_ready.set()
                while not done.is_set():
                    with anyio.move_on_after(0.2):
                        delivery = await inbox.get(LONG_LEASE)
                        seen[delivery.body] += 1
                        await delivery.ack()
                        if len(seen) == len(expected):
                            done.set()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(consumers):
                    tg.start_soon(consume)
                await all_ready.wait()
                for p in range(producers):
                    tg.start_soon(produce, p)
        assert set(seen) == expected
        duplicates = {body: n for body, n in seen.items() if n > 1}
        # Leases are long and every consumer acks at once: no lease can lapse, so even
        # at-least-once delivery owes exactly once here.
        assert not duplicates, f"{len(duplicates)} messages delivered more than once"

    async def test_prefetch_bounds_what_a_consumer_holds(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        total, prefetch = 40, 5
        await publish(broker, queue, [f"m{i}".encode() for i in range(total)])
        async with reading(broker, queue, ack=ack, prefetch=prefetch, lease=LONG_LEASE) as a:
            held = await a.take(prefetch, harness.tolerance)
            await a.nothing_for(0.5, f"a consumer with prefetch={prefetch} took one more")
            # Nothing beyond the prefetch sits hidden in the first consumer: another one
            # gets all the rest while the first holds its share.
            async with (
                connect() as other,
                reading(other, queue, ack=ack, prefetch=total, lease=LONG_LEASE) as b,
            ):
                rest = await b.take(total - prefetch, harness.tolerance * 2)
                for delivery in rest:
                    await delivery.ack()
            await held[0].ack()
            for delivery in held[1:]:
                await delivery.ack()
        assert len({d.body for d in held + rest}) == total

    async def test_queues_are_isolated(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        other = f"{queue}-other"
        try:
            await publish(broker, queue, [b"mine"])
            await publish(broker, other, [b"theirs"])
            async with reading(broker, other, ack=ack, prefetch=5, lease=LONG_LEASE) as inbox:
                got = await inbox.get(harness.tolerance)
                assert got.body == b"theirs"
                await got.ack()
                await inbox.nothing_for(0.5, f"queue {other!r} delivered another queue's message")
            async with reading(broker, queue, ack=ack, prefetch=5, lease=LONG_LEASE) as inbox:
                got = await inbox.get(harness.tolerance)
                assert got.body == b"mine"
                await got.ack()
        finally:
            await harness.cleanup([other, dead_queue(other)])

    async def test_stats_match_reality_and_purge_empties(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        await publish(broker, queue, [b"r1", b"r2", b"r3"])
        if broker.capabilities.max_delay != 0:
            await publish(broker, queue, [b"later"], delay=LONG_LEASE)
        await publish(broker, dead_queue(queue), [b"d1", b"d2"])
        delayed = 1 if broker.capabilities.max_delay != 0 else 0

        async def stats_are(expected: QueueStats) -> bool | QueueStats:
            stats = await broker.stats(queue)
            return stats == expected or stats

        await eventually(lambda: stats_are(QueueStats(3, delayed, 0, 2)), harness.tolerance,
                         "stats of 3 ready, the delayed, 2 dead")  # fmt: skip
        if ack is Ack.ON_COMPLETION:
            async with reading(broker, queue, ack=ack, prefetch=1, lease=LONG_LEASE) as inbox:
                held = await inbox.get(harness.tolerance)
                await eventually(lambda: stats_are(QueueStats(2, delayed, 1, 2)),
                                 harness.tolerance, "one in flight")  # fmt: skip
                await held.release()
        purged = await broker.purge(queue)
        assert purged == 3 + delayed
        await eventually(lambda: stats_are(QueueStats(0, 0, 0, 2)), harness.tolerance,
                         "an empty queue after purge, dead letters untouched")  # fmt: skip
        assert await broker.purge(dead_queue(queue)) == 2

    async def test_ordered_for_one_consumer(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        requires(broker.capabilities, ordered=True)
        bodies = [f"{i:04d}".encode() for i in range(200)]
        for start in range(0, len(bodies), 20):
            await publish(broker, queue, bodies[start : start + 20])
        async with reading(broker, queue, ack=ack, prefetch=10, lease=LONG_LEASE) as inbox:
            got: list[bytes] = []
            for _ in bodies:
                delivery = await inbox.get(harness.tolerance)
                got.append(delivery.body)
                await delivery.ack()
        assert got == bodies

    async def test_delayed_publish_waits_without_being_held(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        requires(broker.capabilities, delays=True)
        delay = 2.0
        if broker.capabilities.max_delay is not None:
            delay = min(delay, broker.capabilities.max_delay)
        published = time.monotonic()
        await publish(broker, queue, [b"later"], delay=delay)
        await publish(broker, queue, [b"now"])
        # prefetch=1: if the consumer held the delayed message, "now" could not get through.
        async with reading(broker, queue, ack=ack, prefetch=1, lease=LONG_LEASE) as inbox:
            first = await inbox.get(harness.tolerance, "the undelayed message")
            assert first.body == b"now", "the delayed message came before its time"
            assert time.monotonic() < published + delay, "the undelayed message waited"
            await first.ack()
            arrived, later = await inbox.get_timed(delay + harness.tolerance, "the delayed one")
            assert later.body == b"later"
            assert arrived >= published + delay - harness.early, (
                f"delivered {published + delay - arrived:.3f} s early"
            )
            assert later.attempt == 1
            await later.ack()

    async def test_retry_redelivers_after_the_delay_with_attempt_raised(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        requires(broker.capabilities, delays=True)
        delay = 1.5
        await publish(broker, queue, [b"again"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=LONG_LEASE) as inbox:
            first = await inbox.get(harness.tolerance)
            assert first.attempt == 1
            retried_at = time.monotonic()
            await first.retry(delay)
            arrived, second = await inbox.get_timed(delay + harness.tolerance, "the retry")
            assert second.body == b"again"
            assert second.attempt == 2
            assert arrived >= retried_at + delay - harness.early, (
                f"redelivered {retried_at + delay - arrived:.3f} s early"
            )
            await second.retry(0)
            third = await inbox.get(harness.tolerance, "a retry with no delay")
            assert third.attempt == 3
            await third.ack()

    async def test_release_comes_back_promptly_with_attempt_unchanged(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        await publish(broker, queue, [b"back"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=LONG_LEASE) as inbox:
            first = await inbox.get(harness.tolerance)
            await first.release()
            second = await inbox.get(harness.tolerance, "the released message")
            assert second.body == b"back"
            assert second.attempt == first.attempt == 1
            await second.ack()

    async def test_graceful_close_gives_back_prefetched_messages(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        total = 10
        await publish(broker, queue, [f"p{i}".encode() for i in range(total)])
        async with reading(broker, queue, ack=ack, prefetch=total, lease=LONG_LEASE) as inbox:
            first = await inbox.get(harness.tolerance)
            await first.release()
            # Whatever else it fetched is given back when the consumer closes.
        async with (
            connect() as other,
            reading(other, queue, ack=ack, prefetch=total, lease=LONG_LEASE) as inbox,
        ):
            # Far sooner than the 60 s lease: released, not expired.
            got = await inbox.take(total, harness.tolerance * 2)
            for delivery in got:
                await delivery.ack()
        assert sorted(d.body for d in got) == sorted(f"p{i}".encode() for i in range(total))
        assert all(d.attempt == 1 for d in got), [d.attempt for d in got]

    async def test_settling_twice_is_harmless(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        await publish(broker, queue, [b"once", b"other"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=LONG_LEASE) as inbox:
            delivery: Delivery = await inbox.get(harness.tolerance)
            await delivery.ack()
            await delivery.ack()
            await delivery.release()
            nxt = await inbox.get(harness.tolerance)
            assert nxt.body != delivery.body
            await nxt.ack()
            await inbox.nothing_for(0.5, "a settled message came back")
