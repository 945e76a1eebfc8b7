"""Conformance: leases in ``ON_COMPLETION`` mode, within one process."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio

from chute.broker import Ack, Broker, Delivery
from chute.testing._base import ConformanceBase, modes, requires
from chute.testing._harness import BrokerHarness
from chute.testing._tools import publish, reading

Connect = Callable[[], AbstractAsyncContextManager[Broker]]


class LeaseConformance(ConformanceBase):
    """Lapsed leases redeliver, extended ones do not, stale acks are fenced."""

    @modes(Ack.ON_COMPLETION)
    async def test_lapsed_lease_redelivers_with_attempt_raised(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, expiry=True, persistent=True)
        lease = harness.lease
        await publish(broker, queue, [b"lost"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=lease) as a:
            held = await a.get(harness.tolerance)
            taken = time.monotonic()
            async with (
                connect() as other,
                reading(other, queue, ack=ack, prefetch=1, lease=lease) as b,
            ):
                arrived, again = await b.get_timed(lease + harness.tolerance, "a redelivery")
                assert again.body == b"lost"
                assert again.attempt == held.attempt + 1
                assert arrived >= taken + lease - harness.early, "redelivered before the lease"
                await again.ack()

    @modes(Ack.ON_COMPLETION)
    async def test_acked_message_never_comes_back(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, expiry=True, persistent=True)
        lease = harness.lease
        await publish(broker, queue, [b"done"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=lease) as a:
            delivery = await a.get(harness.tolerance)
            await delivery.ack()
            async with (
                connect() as other,
                reading(other, queue, ack=ack, prefetch=1, lease=lease) as b,
            ):
                await b.nothing_for(lease + 1.0, "an acked message was delivered again")
            assert not a.pending(), "an acked message was delivered again"

    @modes(Ack.ON_COMPLETION)
    async def test_extended_lease_is_kept_and_lapses_once_extension_stops(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, expiry=True, persistent=True)
        lease = harness.lease
        await publish(broker, queue, [b"long job"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=lease) as a:
            held = await a.get(harness.tolerance)
            async with (
                connect() as other,
                reading(other, queue, ack=ack, prefetch=1, lease=lease) as b,
            ):
                # Work for three leases, extending every third of one.
                with anyio.move_on_after(3 * lease):
                    while True:
                        await held.extend(lease)
                        await anyio.sleep(lease / 3)
                assert not b.pending(), "redelivered while its lease was being extended"
                stopped = time.monotonic()
                arrived, again = await b.get_timed(lease + harness.tolerance, "a redelivery")
                assert arrived >= stopped + lease / 3 - harness.early
                assert again.attempt == 2
                await again.ack()

    @modes(Ack.ON_COMPLETION)
    async def test_stale_ack_does_not_remove_the_redelivered_copy(
        self, broker: Broker, connect: Connect, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, expiry=True, persistent=True)
        lease = harness.lease
        await publish(broker, queue, [b"twice"])
        async with reading(broker, queue, ack=ack, prefetch=1, lease=lease) as a:
            stale = await a.get(harness.tolerance)
            async with (
                connect() as other,
                reading(other, queue, ack=ack, prefetch=1, lease=60) as b,
            ):
                live = await b.get(lease + harness.tolerance, "a redelivery")
                await stale.ack()
                await stale.extend(lease)
                # The live copy must still be there: give it back and see it again, at
                # whichever consumer (the stale one has a free slot now).
                await live.release()
                found: list[Delivery] = []
                with anyio.move_on_after(harness.tolerance):
                    while not (found := a.pending() + b.pending()):
                        await anyio.sleep(0.01)
                assert found, "a stale ack removed the copy leased to another consumer"
                again = found[0]
                assert again.body == b"twice"
                assert again.attempt == live.attempt
                await again.ack()
