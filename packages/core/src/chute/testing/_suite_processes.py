"""Conformance: real consumer processes killed, paused and cut off."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

from chute.broker import Ack, Broker, dead_queue
from chute.testing._base import ConformanceBase, modes, requires
from chute.testing._child import ConsumerProcess, Event
from chute.testing._harness import BrokerHarness
from chute.testing._tools import publish, reading

Connect = Callable[[], AbstractAsyncContextManager[Broker]]
LONG_LEASE = 60.0

# Starting a Python process that imports a broker client takes a while on a busy machine.
SPAWN = 30.0


def _got(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(e["event"] == "got" for e in events) >= n


class ProcessConformance(ConformanceBase):
    """SIGKILL, SIGSTOP and severed connections, with consumers in other processes."""

    @modes(Ack.ON_COMPLETION)
    async def test_killed_consumer_loses_nothing_it_held(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness, process_url: str,
        stress: int,
    ) -> None:  # fmt: skip
        requires(broker.capabilities, persistent=True)
        del process_url
        total, prefetch = 10, 5
        for round_ in range(stress):
            bodies = [f"{round_}:{i}".encode() for i in range(total)]
            await publish(broker, queue, bodies)
            child = ConsumerProcess(harness, queue, ack=ack, prefetch=prefetch,
                                    lease=harness.lease, mode="hold")  # fmt: skip
            try:
                await child.wait_for(_got(prefetch), SPAWN)
                held = {bytes.fromhex(e["body"]) for e in child.got()}
                await child.kill()
            finally:
                await child.close()
            killed = time.monotonic()
            async with reading(broker, queue, ack=ack, prefetch=total, lease=LONG_LEASE) as inbox:
                got = await inbox.take(total, harness.lease + harness.tolerance)
                for delivery in got:
                    await delivery.ack()
            assert time.monotonic() - killed <= harness.lease + harness.tolerance
            assert sorted(d.body for d in got) == sorted(bodies)
            for delivery in got:
                expected = 2 if delivery.body in held else 1
                assert delivery.attempt == expected, (delivery.body, delivery.attempt)

    @modes(Ack.ON_RECEIPT)
    async def test_killed_consumer_loses_only_what_it_held(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness, process_url: str,
        stress: int,
    ) -> None:  # fmt: skip
        requires(broker.capabilities, persistent=True)
        del process_url
        total, prefetch = 10, 3
        for round_ in range(stress):
            bodies = [f"{round_}:{i}".encode() for i in range(total)]
            await publish(broker, queue, bodies)
            child = ConsumerProcess(harness, queue, ack=ack, prefetch=prefetch,
                                    lease=harness.lease, mode="hold")  # fmt: skip
            try:
                await child.wait_for(_got(prefetch), SPAWN)
                held = {bytes.fromhex(e["body"]) for e in child.got()}
                await child.kill()
            finally:
                await child.close()
            async with reading(broker, queue, ack=ack, prefetch=total, lease=LONG_LEASE) as inbox:
                got = await inbox.take(total - len(held), harness.tolerance)
                await inbox.nothing_for(
                    harness.lease + 1.0, "a message the killed consumer held came back"
                )
            assert {d.body for d in got} == set(bodies) - held

    @modes(Ack.ON_COMPLETION)
    async def test_ack_from_a_paused_consumer_does_not_remove_the_redelivered_copy(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness, process_url: str,
    ) -> None:  # fmt: skip
        requires(broker.capabilities, persistent=True)
        del process_url
        requires(broker.capabilities, expiry=True)
        await publish(broker, queue, [b"paused"])
        child = ConsumerProcess(harness, queue, ack=ack, prefetch=1, lease=harness.lease,
                                mode="stdin")  # fmt: skip
        try:
            await child.wait_for(_got(1), SPAWN)
            (event,) = child.got()
            child.signal(signal.SIGSTOP)
            async with reading(broker, queue, ack=ack, prefetch=1, lease=LONG_LEASE) as inbox:
                live = await inbox.get(harness.lease + harness.tolerance, "a redelivery")
                assert live.attempt == 2
                child.send(f"ack {event['id']}")
                child.signal(signal.SIGCONT)
                await child.wait_for(
                    lambda events: any(e["event"] in ("acked", "ack-failed") for e in events),
                    harness.tolerance * 2,
                )
                await child.kill()
                await live.release()
                again = await inbox.get(harness.tolerance, "the copy a stale ack must not remove")
                assert again.body == b"paused"
                await again.ack()
        finally:
            if child.proc.poll() is None:
                child.signal(signal.SIGCONT)
            await child.close()

    @modes(Ack.ON_COMPLETION)
    async def test_message_that_kills_every_consumer_stops_at_the_attempt_limit(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness, process_url: str,
    ) -> None:  # fmt: skip
        requires(broker.capabilities, persistent=True)
        del process_url
        limit, healthy = 3, 20
        poison = b"poison"
        await publish(broker, queue, [poison])
        await publish(broker, queue, [f"ok{i}".encode() for i in range(healthy)])
        acked: set[bytes] = set()
        deaths = 0
        dead_at: float | None = None
        all_healthy_at: float | None = None
        with anyio.fail_after((limit + 1) * (harness.lease + harness.tolerance) + 2 * SPAWN):
            while dead_at is None:
                child = ConsumerProcess(harness, queue, ack=ack, prefetch=1, lease=harness.lease,
                                        mode="ack", die_on=poison, limit=limit)  # fmt: skip
                try:
                    while child.proc.poll() is None and dead_at is None:
                        await anyio.sleep(0.02)
                        child.got()
                        for e in child.events:
                            body = bytes.fromhex(e.get("body", ""))
                            if e["event"] == "acked":
                                acked.add(body)
                                if len(acked) == healthy and all_healthy_at is None:
                                    all_healthy_at = time.monotonic()
                            elif e["event"] == "dead" and body == poison:
                                dead_at = time.monotonic()
                        child.events.clear()
                    if child.proc.poll() is not None:
                        deaths += 1
                finally:
                    await child.close()
        assert deaths == limit, f"the poison killed {deaths} consumers, expected {limit}"
        assert acked == {f"ok{i}".encode() for i in range(healthy)}
        assert all_healthy_at is not None and all_healthy_at < dead_at, (
            "healthy messages waited behind the poison"
        )
        async with reading(broker, dead_queue(queue), ack=ack, prefetch=1, lease=LONG_LEASE) as d:
            letter = await d.get(harness.tolerance, "the poison in the dead-letter queue")
            assert letter.body == poison
            await letter.ack()

    async def test_consumer_recovers_from_a_cut_connection(
        self, broker: Broker, queue: str, ack: Ack, harness: BrokerHarness
    ) -> None:
        requires(broker.capabilities, persistent=True)
        if not harness.can_cut_connections:
            pytest.skip("the harness cannot cut a connection (can_cut_connections is false)")
        first, second, prefetch = 200, 100, 10
        await publish(broker, queue, [f"a{i}".encode() for i in range(first)])
        seen: set[bytes] = set()
        async with reading(broker, queue, ack=ack, prefetch=prefetch, lease=harness.lease) as inbox:
            for _ in range(50):
                delivery = await inbox.get(harness.tolerance)
                seen.add(delivery.body)
                await delivery.ack()
            await harness.cut_connection(broker)
            await publish(broker, queue, [f"b{i}".encode() for i in range(second)])
            expected = {f"a{i}".encode() for i in range(first)} | {
                f"b{i}".encode() for i in range(second)
            }
            with anyio.move_on_after(harness.lease + 3 * harness.tolerance):
                while len(seen) < len(expected):
                    delivery = await inbox.get(harness.lease + 3 * harness.tolerance)
                    seen.add(delivery.body)
                    try:
                        await delivery.ack()
                    except Exception:
                        # An ack racing the cut may fail; at-least-once brings it back.
                        pass
        missing = expected - seen
        if ack is Ack.ON_COMPLETION:
            assert not missing, f"{len(missing)} messages lost after a connection cut"
        else:
            # At-most-once may lose what was in transit when the connection died, no more.
            assert len(missing) <= prefetch, f"{len(missing)} messages lost after a cut"
