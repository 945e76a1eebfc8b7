"""What the JetStream mode promises beyond the conformance suite, against a real server."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from _nats_support import (  # pyright: ignore[reportMissingImports]
    ACK_WAIT,
    PrivateNats,
    can_cut_connections,
    cut,
    drop_stream,
    forget_queues,
    with_options,
)

from chute.broker import Ack, Outgoing, QueueStats, dead_queue
from chute.errors import BrokerConfigConflict, BrokerError, BrokerUnavailable
from chute.testing._tools import eventually, reading  # pyright: ignore[reportPrivateUsage]
from chute_nats import NatsBroker
from chute_nats._connection import Connection
from chute_nats._settings import parse

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

TOLERANCE = 4.0


@pytest.fixture
def url(nats_url: str) -> str:
    return with_options(nats_url, namespace="chutejs", ack_wait=ACK_WAIT)


@pytest.fixture
async def queue(url: str) -> AsyncIterator[str]:
    name = f"js{uuid.uuid4().hex[:10]}"
    yield name
    await forget_queues(url, [name, dead_queue(name), f"{name}.x"])


@pytest.fixture
async def broker(url: str) -> AsyncIterator[NatsBroker]:
    async with NatsBroker(url) as b:
        yield b


async def raw(
    url: str, subject: str, payload: dict[str, object] | None = None
) -> dict[str, object]:
    conn = Connection(parse(url, {}))
    await conn.open()
    try:
        return await conn.api(subject, payload, missing_ok=True)
    finally:
        await conn.close()


async def stored(broker: NatsBroker, queue: str) -> int:
    stats = await broker.stats(queue)
    return stats.ready + stats.in_flight + stats.delayed


# -- leases -------------------------------------------------------------------------------


async def test_a_lease_longer_than_the_ack_wait_is_kept_then_lapses(
    broker: NatsBroker, url: str, queue: str
) -> None:
    lease = 3 * ACK_WAIT
    await broker.publish(queue, [Outgoing(b"long")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=lease) as a:
        held = await a.get(TOLERANCE)
        taken = time.monotonic()
        async with (
            NatsBroker(url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as b,
        ):
            # Without any extend(): in-progress acks keep it past two ack waits...
            await b.nothing_for(2 * ACK_WAIT, "redelivered within the lease")
            # ...and once the lease is over, it lapses within one more ack wait.
            arrived, again = await b.get_timed(lease + ACK_WAIT + TOLERANCE, "a redelivery")
            assert arrived >= taken + lease - 0.1
            assert again.attempt == held.attempt + 1 == 2
            await again.ack()


async def test_extend_beyond_the_ack_wait_holds_for_the_asked_lease(
    broker: NatsBroker, url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"extended")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=ACK_WAIT) as a:
        held = await a.get(TOLERANCE)
        await held.extend(3 * ACK_WAIT)
        extended = time.monotonic()
        async with (
            NatsBroker(url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as b,
        ):
            arrived, again = await b.get_timed(4 * ACK_WAIT + TOLERANCE, "a redelivery")
            assert arrived >= extended + 3 * ACK_WAIT - 0.1
            assert again.attempt == 2
            await again.ack()


async def test_late_retry_and_release_leave_the_redelivered_copy_alone(
    broker: NatsBroker, url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"once")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=ACK_WAIT) as a:
        first = await a.get(TOLERANCE)
        second_view = None
        async with (
            NatsBroker(url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as b,
        ):
            live = await b.get(ACK_WAIT + TOLERANCE, "a redelivery")
            # Neither a negative ack (which would hand the live copy out again), nor a copy.
            await first.retry(0)
            await first.release()
            await a.nothing_for(1.0, "a late settlement put the message back")
            assert await stored(broker, queue) == 1
            second_view = live
            await live.ack()
        assert second_view.attempt == 2
    await eventually(lambda: _is_empty(broker, queue), TOLERANCE, "an empty queue")


async def _is_empty(broker: NatsBroker, queue: str) -> bool:
    return await stored(broker, queue) == 0


async def test_attempt_survives_a_release_followed_by_a_lapsed_lease(
    broker: NatsBroker, url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"counted")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=ACK_WAIT) as a:
        first = await a.get(TOLERANCE)
        await first.release()
        again = await a.get(TOLERANCE, "the released message")
        assert (first.attempt, again.attempt) == (1, 1)
        await again.retry(0)
        third = await a.get(TOLERANCE, "the retried message")
        assert third.attempt == 2
        # Now hold it and let the lease lapse: the server counts the lost attempt.
        async with (
            NatsBroker(url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as b,
        ):
            fourth = await b.get(ACK_WAIT + TOLERANCE, "a redelivery")
            assert fourth.attempt == 3
            await fourth.ack()


# -- delays -------------------------------------------------------------------------------


async def test_delayed_messages_wait_on_the_server_while_nobody_consumes(
    broker: NatsBroker, queue: str
) -> None:
    published = time.monotonic()
    await broker.publish(queue, [Outgoing(b"later", delay=1.0)])
    assert await broker.stats(queue) == QueueStats(0, 1, 0, 0)
    await anyio.sleep(1.5)
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
        got = await inbox.get(TOLERANCE, "the overdue message")
        assert got.body == b"later"
        assert got.attempt == 1
        assert time.monotonic() - published >= 1.0
        await got.ack()


async def test_a_delay_outlives_the_consumer_that_first_saw_it(
    broker: NatsBroker, url: str, queue: str
) -> None:
    delay = 3.0
    published = time.monotonic()
    await broker.publish(queue, [Outgoing(b"patient", delay=delay)])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
        await inbox.nothing_for(1.0, "delivered before its time")
    async with (
        NatsBroker(url) as other,
        reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox,
    ):
        arrived, got = await inbox.get_timed(delay + TOLERANCE, "the delayed message")
        assert arrived >= published + delay - 0.05
        assert (got.body, got.attempt) == (b"patient", 1)
        await got.ack()
    assert await stored(broker, queue) == 0


async def test_many_delays_come_due_in_order_without_holding_consumers(
    broker: NatsBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(f"d{i}".encode(), delay=0.5 + i * 0.2) for i in range(5)])
    await broker.publish(queue, [Outgoing(b"now")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
        got = []
        for _ in range(6):
            delivery = await inbox.get(TOLERANCE + 2)
            got.append(delivery.body)
            await delivery.ack()
    assert got == [b"now", b"d0", b"d1", b"d2", b"d3", b"d4"]


# -- publishing ---------------------------------------------------------------------------


async def test_a_key_is_published_once_within_the_duplicate_window(
    broker: NatsBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"a", key="k1"), Outgoing(b"b", key="k2")])
    await broker.publish(queue, [Outgoing(b"a again", key="k1")])
    assert await broker.stats(queue) == QueueStats(2, 0, 0, 0)


async def test_dotted_and_underscored_queues_are_separate(broker: NatsBroker, queue: str) -> None:
    dotted, underscored = f"{queue}.x", f"{queue}_x"
    try:
        await broker.publish(dotted, [Outgoing(b"dot")])
        await broker.publish(underscored, [Outgoing(b"underscore")])
        for name, body in ((dotted, b"dot"), (underscored, b"underscore")):
            async with reading(broker, name, ack=Ack.ON_RECEIPT, prefetch=5, lease=60) as inbox:
                got = await inbox.get(TOLERANCE)
                assert got.body == body
                await inbox.nothing_for(0.3, f"{name} got another queue's message")
    finally:
        await forget_queues(broker.url, [underscored])


# -- configuration conflicts ----------------------------------------------------------------


async def test_a_consumer_with_another_ack_wait_is_a_clear_conflict(
    broker: NatsBroker, url: str, queue: str
) -> None:
    async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=ACK_WAIT):
        pass
    other = NatsBroker(url, ack_wait=5)
    async with other:
        with pytest.raises(BrokerConfigConflict) as caught:
            async with other.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=5):
                pass
    text = str(caught.value)
    for part in (f"queue {queue!r}", f"q-{queue}", "ack_wait=2s", "ack_wait=5s",
                 "?ack_wait=2", f"nats consumer rm CHUTEJS q-{queue}"):  # fmt: skip
        assert part in text, text
    # The existing consumer was not changed behind the first broker's back.
    info = await raw(url, f"CONSUMER.INFO.CHUTEJS.q-{queue}")
    assert info["config"]["ack_wait"] == ACK_WAIT * 1_000_000_000  # type: ignore[index]


async def test_a_consumer_created_with_a_delivery_limit_is_a_clear_conflict(
    url: str, queue: str
) -> None:
    async with NatsBroker(url):
        pass
    config = {
        "durable_name": f"q-{queue}",
        "filter_subject": f"chutejs.q.{queue}",
        "ack_policy": "explicit",
        "ack_wait": ACK_WAIT * 1_000_000_000,
        "max_deliver": 5,
    }
    answer = await raw(url, f"CONSUMER.DURABLE.CREATE.CHUTEJS.q-{queue}",
                       {"stream_name": "CHUTEJS", "config": config})  # fmt: skip
    assert "error" not in answer, answer
    async with NatsBroker(url) as broker:
        with pytest.raises(BrokerConfigConflict, match="max_deliver=5, but this broker needs"):
            async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=2):
                pass


async def test_a_stream_with_other_storage_is_a_clear_conflict(nats_url: str) -> None:
    url = with_options(nats_url, namespace=f"cs{uuid.uuid4().hex[:8]}")
    try:
        async with NatsBroker(url, storage="memory"):
            pass
        with pytest.raises(BrokerConfigConflict) as caught:
            async with NatsBroker(url):
                pass
        text = str(caught.value)
        assert "storage='memory'" in text and "storage='file'" in text, text
        assert "?storage=memory" in text and "nats stream rm" in text, text
    finally:
        await drop_stream(url)


async def test_a_stream_that_is_not_a_work_queue_is_a_clear_conflict(nats_url: str) -> None:
    namespace = f"cs{uuid.uuid4().hex[:8]}"
    url = with_options(nats_url, namespace=namespace)
    stream = namespace.upper()
    answer = await raw(url, f"STREAM.CREATE.{stream}", {
        "name": stream, "subjects": [f"{namespace}.q.>", f"{namespace}.d.>"],
        "retention": "limits", "storage": "file",
    })  # fmt: skip
    assert "error" not in answer, answer
    try:
        with pytest.raises(BrokerConfigConflict, match=r"retention='limits'.*'workqueue'"):
            async with NatsBroker(url):
                pass
    finally:
        await drop_stream(url)


async def test_subjects_taken_by_another_stream_are_a_clear_conflict(nats_url: str) -> None:
    namespace = f"cs{uuid.uuid4().hex[:8]}"
    squatter = with_options(nats_url, namespace=f"x{namespace}")
    stream = f"X{namespace.upper()}"
    answer = await raw(
        squatter, f"STREAM.CREATE.{stream}", {"name": stream, "subjects": [f"{namespace}.>"]}
    )
    assert "error" not in answer, answer
    try:
        with pytest.raises(BrokerConfigConflict, match="another stream already captures"):
            async with NatsBroker(with_options(nats_url, namespace=namespace)):
                pass
    finally:
        await drop_stream(squatter)


# -- connections --------------------------------------------------------------------------


async def test_an_unreachable_server_fails_fast_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        async with NatsBroker("nats://bob:s3cret@127.0.0.1:9", connect_timeout=1):
            pass
    assert time.monotonic() - started < 10
    assert "s3cret" not in str(caught.value) and "bob:***@" in str(caught.value)


async def test_a_server_without_jetstream_is_named_as_such(
    private_nats: Callable[..., PrivateNats],
) -> None:
    server = private_nats(jetstream=False)
    with pytest.raises(BrokerError, match=r"JetStream is not enabled.*jetstream=false"):
        async with NatsBroker(server.url):
            pass


@pytest.mark.skipif(not can_cut_connections(), reason="cutting connections needs root and ss")
async def test_an_idle_consumer_does_not_stall_after_a_cut(
    broker: NatsBroker, url: str, queue: str
) -> None:
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=5, lease=60) as inbox:
        await inbox.nothing_for(0.3, "an empty queue delivered")
        await cut(broker)
        async with NatsBroker(url) as producer:
            await producer.publish(queue, [Outgoing(b"after the cut")])
        got = await inbox.get(2 * TOLERANCE, "a message published after the cut")
        assert (got.body, got.attempt) == (b"after the cut", 1)
        await got.ack()


async def test_a_server_restart_loses_nothing_and_consumers_carry_on(
    private_nats: Callable[..., PrivateNats],
) -> None:
    server = private_nats()
    url = with_options(server.url, ack_wait=ACK_WAIT)
    bodies = {f"m{i}".encode() for i in range(40)}
    async with NatsBroker(url) as broker:
        await broker.publish("work", [Outgoing(b) for b in sorted(bodies)[:20]])
        seen: set[bytes] = set()
        async with reading(broker, "work", ack=Ack.ON_COMPLETION, prefetch=5, lease=60) as inbox:
            for _ in range(10):
                delivery = await inbox.get(TOLERANCE)
                seen.add(delivery.body)
                await delivery.ack()
            server.stop()
            server.start()
            async with NatsBroker(url) as producer:
                await producer.publish("work", [Outgoing(b) for b in sorted(bodies)[20:]])
            with anyio.fail_after(6 * TOLERANCE):
                while seen != bodies:
                    delivery = await inbox.get(6 * TOLERANCE)
                    seen.add(delivery.body)
                    try:
                        await delivery.ack()
                    except BrokerError:
                        pass  # an ack racing the reconnect; the message comes back
            # Whatever came back because an ack was lost is still there, and only that.
            with anyio.move_on_after(2 * ACK_WAIT + TOLERANCE):
                while not await _is_empty(broker, "work"):
                    delivery = await inbox.get(2 * ACK_WAIT + TOLERANCE)
                    assert delivery.body in bodies and delivery.attempt >= 2
                    await delivery.ack()
        assert await _is_empty(broker, "work")


async def test_a_consumer_deleted_on_the_server_is_created_again(
    broker: NatsBroker, url: str, queue: str
) -> None:
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=5, lease=60) as inbox:
        await inbox.nothing_for(0.3, "an empty queue delivered")
        answer = await raw(url, f"CONSUMER.DELETE.CHUTEJS.q-{queue}")
        assert answer.get("success") is True, answer
        await broker.publish(queue, [Outgoing(b"after the delete")])
        got = await inbox.get(TOLERANCE, "a message published after the consumer was deleted")
        assert got.body == b"after the delete"
        await got.ack()


async def test_a_broker_can_be_entered_again_after_closing(url: str, queue: str) -> None:
    broker = NatsBroker(url)
    for round_ in range(2):
        async with broker:
            await broker.publish(queue, [Outgoing(f"r{round_}".encode(), delay=0.2)])
            async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
                got = await inbox.get(TOLERANCE)
                assert got.body == f"r{round_}".encode()
                await got.ack()


async def test_a_lease_shorter_than_the_ack_wait_lasts_the_ack_wait(
    broker: NatsBroker, url: str, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"short")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=0.5) as a:
        await a.get(TOLERANCE)
        taken = time.monotonic()
        async with (
            NatsBroker(url) as other,
            reading(other, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as b,
        ):
            arrived, again = await b.get_timed(ACK_WAIT + TOLERANCE, "a redelivery")
            assert arrived >= taken + ACK_WAIT - 0.2
            assert again.attempt == 2
            await again.ack()


async def test_an_idle_consumer_waits_in_one_long_pull_request(
    broker: NatsBroker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chute_nats import _pull

    asked: list[int] = []
    request = _pull.Puller.request

    async def counting(self: _pull.Puller, batch: int) -> None:
        asked.append(batch)
        await request(self, batch)

    monkeypatch.setattr(_pull.Puller, "request", counting)
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=5, lease=60) as inbox:
        await inbox.nothing_for(2.0, "an empty queue delivered")
    # One request for the queue and one for its delayed messages, for the whole wait.
    assert asked == [64, 5] or asked == [5, 64], asked


@pytest.mark.skipif(not can_cut_connections(), reason="cutting connections needs root and ss")
async def test_a_settlement_while_disconnected_raises_and_the_message_comes_back(
    broker: NatsBroker, queue: str
) -> None:
    await broker.publish(queue, [Outgoing(b"unsettled")])
    async with reading(broker, queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=60) as inbox:
        held = await inbox.get(TOLERANCE)
        await cut(broker)
        with anyio.fail_after(TOLERANCE):
            while broker._conn.connected:  # pyright: ignore[reportPrivateUsage]
                await anyio.sleep(0.001)
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await held.ack()
        again = await inbox.get(ACK_WAIT + 2 * TOLERANCE, "the message whose ack was refused")
        assert (again.body, again.attempt) == (b"unsettled", 2)
        await again.ack()


@pytest.mark.skipif(not can_cut_connections(), reason="cutting connections needs root and ss")
async def test_a_publish_cut_off_midway_stores_every_message_once(
    broker: NatsBroker, queue: str
) -> None:
    bodies = [f"m{i:05d}".encode() for i in range(3000)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(broker.publish, queue, [Outgoing(b) for b in bodies])
        await anyio.sleep(0.02)
        await cut(broker)
    assert await broker.stats(queue) == QueueStats(len(bodies), 0, 0, 0)
    got: list[bytes] = []
    async with reading(broker, queue, ack=Ack.ON_RECEIPT, prefetch=500, lease=60) as inbox:
        for _ in bodies:
            delivery = await inbox.get(TOLERANCE, f"delivery {len(got)}")
            got.append(delivery.body)
            await delivery.ack()
    assert sorted(got) == bodies


async def test_a_deleted_stream_is_created_again(nats_url: str) -> None:
    url = with_options(nats_url, namespace=f"ds{uuid.uuid4().hex[:8]}", ack_wait=ACK_WAIT)
    try:
        async with NatsBroker(url) as broker:
            await drop_stream(url)
            await broker.publish("jobs", [Outgoing(b"after the delete")])
            async with reading(
                broker, "jobs", ack=Ack.ON_COMPLETION, prefetch=1, lease=60
            ) as inbox:
                got = await inbox.get(TOLERANCE)
                assert got.body == b"after the delete"
                await got.ack()
    finally:
        await drop_stream(url)
