"""Core NATS mode (``jetstream=false``): what it keeps, and what it honestly does not."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
from _nats_support import with_options  # pyright: ignore[reportMissingImports]

from chute.broker import Ack, Outgoing, QueueStats
from chute.errors import BrokerError
from chute.testing._tools import reading  # pyright: ignore[reportPrivateUsage]
from chute_nats import NatsBroker

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

TOLERANCE = 4.0
RECEIPT = Ack.ON_RECEIPT


@pytest.fixture
def url(nats_url: str) -> str:
    return with_options(nats_url, jetstream="false", namespace="chutecore")


@pytest.fixture
def queue() -> str:
    return f"core{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def broker(url: str) -> AsyncIterator[NatsBroker]:
    async with NatsBroker(url) as b:
        yield b


async def test_capabilities_say_what_core_nats_cannot_do(broker: NatsBroker, queue: str) -> None:
    caps = broker.capabilities
    assert caps.acks == frozenset({RECEIPT})
    assert not caps.persistent and not caps.ordered and not caps.lease_expiry
    with pytest.raises(BrokerError, match="supports only ON_RECEIPT"):
        async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=5):
            pass
    assert await broker.stats(queue) == QueueStats(0, 0, 0, 0)
    assert await broker.purge(queue) == 0


async def test_a_message_published_while_no_consumer_listens_is_lost(
    broker: NatsBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"into the void")])
    async with reading(broker, queue, ack=RECEIPT, prefetch=5, lease=60) as inbox:
        await broker.publish(queue, [Outgoing(b"heard")])
        got = await inbox.get(TOLERANCE)
        assert got.body == b"heard"
        await inbox.nothing_for(0.5, "core NATS kept a message nobody listened for")


async def test_each_message_reaches_one_member_of_the_group(url: str, queue: str) -> None:
    async with (
        NatsBroker(url) as one,
        NatsBroker(url) as two,
        reading(one, queue, ack=RECEIPT, prefetch=100, lease=60) as a,
        reading(two, queue, ack=RECEIPT, prefetch=100, lease=60) as b,
    ):
        await one.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(100)])
        got: list[bytes] = []
        with anyio.fail_after(TOLERANCE):
            while len(got) < 100:
                for delivery in a.pending() + b.pending():
                    got.append(delivery.body)
                    await delivery.ack()
                await anyio.sleep(0.01)
        await a.nothing_for(0.3, "a message reached two members")
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(100))


async def test_prefetch_bounds_what_is_handed_out(broker: NatsBroker, queue: str) -> None:
    async with reading(broker, queue, ack=RECEIPT, prefetch=3, lease=60) as inbox:
        await broker.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(10)])
        held = await inbox.take(3, TOLERANCE)
        await inbox.nothing_for(0.5, "a consumer with prefetch=3 handed out a fourth")
        await held[0].ack()
        fourth = await inbox.get(TOLERANCE, "one more after a settlement")
        await fourth.ack()


async def test_a_delayed_message_waits_in_the_consumer_and_comes_on_time(
    broker: NatsBroker, queue: str
) -> None:
    async with reading(broker, queue, ack=RECEIPT, prefetch=1, lease=60) as inbox:
        published = time.monotonic()
        await broker.publish(queue, [Outgoing(b"later", delay=1.0), Outgoing(b"now")])
        first = await inbox.get(TOLERANCE)
        assert first.body == b"now"
        await first.ack()
        arrived, later = await inbox.get_timed(1.0 + TOLERANCE, "the delayed message")
        assert later.body == b"later" and later.attempt == 1
        assert arrived >= published + 1.0 - 0.05


async def test_retry_and_release_count_attempts_like_every_broker(
    broker: NatsBroker, queue: str
) -> None:
    async with reading(broker, queue, ack=RECEIPT, prefetch=1, lease=60) as inbox:
        await broker.publish(queue, [Outgoing(b"again")])
        first = await inbox.get(TOLERANCE)
        retried = time.monotonic()
        await first.retry(0.5)
        arrived, second = await inbox.get_timed(0.5 + TOLERANCE, "the retry")
        assert arrived >= retried + 0.5 - 0.05
        assert (first.attempt, second.attempt) == (1, 2)
        assert second.id == first.id
        await second.release()
        third = await inbox.get(TOLERANCE, "the released message")
        assert third.attempt == 2
        await third.ack()


async def test_a_graceful_close_hands_waiting_messages_to_another_member(
    url: str, queue: str
) -> None:
    async with NatsBroker(url) as keeper, NatsBroker(url) as leaver:
        leaving = leaver.consume(queue, ack=RECEIPT, prefetch=1, lease=60)
        deliveries = await leaving.__aenter__()
        left = False
        try:
            # Only the leaver listens while these are published: it receives them all.
            await keeper.publish(
                queue, [Outgoing(b"soon", delay=1.5), *(Outgoing(b"x%d" % i) for i in range(3))]
            )
            first = await anext(aiter(deliveries))
            await first.ack()
            async with reading(keeper, queue, ack=RECEIPT, prefetch=10, lease=60) as stays:
                await stays.nothing_for(0.3, "the keeper got a message before the handover")
                left = True
                await leaving.__aexit__(None, None, None)
                # Two unstarted messages and the delayed one come to the keeper.
                got = await stays.take(2, TOLERANCE)
                assert {d.body for d in got} == {b"x0", b"x1", b"x2"} - {first.body}
                assert all(d.attempt == 1 for d in got)
                late = await stays.get(1.5 + TOLERANCE, "the delayed message, still delayed")
                assert late.body == b"soon" and late.attempt == 1
        finally:
            if not left:
                await leaving.__aexit__(None, None, None)
