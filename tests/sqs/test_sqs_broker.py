"""What the SQS broker promises beyond the conformance suite, against the real endpoint."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from chute import App, MessageTooLarge
from chute.broker import Ack, Outgoing
from chute.errors import BrokerError, ConfigurationError
from chute.plugins import broker_from_url
from chute_sqs import SqsBroker, chute_name, sqs_name
from chute_sqs._wire import copy_attributes, max_body

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]

DeleteQueues = Callable[[list[str]], Awaitable[None]]


@pytest.fixture
async def queue(delete_queues: DeleteQueues) -> AsyncIterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    await delete_queues([name, f"{name}.dead", f"{name}.fifo", f"{name}.fifo.dead"])


@pytest.fixture
async def broker(sqs_url: str) -> AsyncIterator[SqsBroker]:
    async with SqsBroker(sqs_url) as b:
        yield b


async def _attributes(broker: SqsBroker, queue: str) -> dict[str, str]:
    client = broker._client  # pyright: ignore[reportPrivateUsage]
    url = await client.url(queue, create=False)
    assert url is not None, f"queue {queue!r} was not created"
    found: Any = await client.call(queue, "get_queue_attributes", QueueUrl=url,
                                   AttributeNames=["All"])  # fmt: skip
    return dict(found["Attributes"])


@pytest.mark.parametrize(
    "name",
    ["emails", "emails.dead", "a_b", "a.b.fifo", "a.b.fifo.dead", "ünï cøde/x", "-_-"],
)
def test_queue_names_map_reversibly_to_valid_sqs_names(name: str) -> None:
    mapped = sqs_name(name, "chute-")
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in mapped.removesuffix(".fifo"))
    assert mapped.endswith(".fifo") == name.endswith(".fifo")
    assert chute_name(mapped, "chute-") == name


def test_queue_name_mapping_is_readable_and_bounded() -> None:
    assert sqs_name("emails.dead", "chute-") == "chute-emails_2edead"
    assert sqs_name("jobs.fifo", "") == "jobs.fifo"
    assert chute_name("other-queue", "chute-") is None
    assert chute_name("chute-bad_zz", "chute-") is None
    with pytest.raises(ConfigurationError, match="80 characters"):
        sqs_name("x" * 80, "chute-")


def test_url_options_parse_and_keywords_override() -> None:
    broker = SqsBroker("sqs://?region=eu-west-1&prefix=app-&wait=20&create=false", wait=3)
    opts = broker.options
    assert (opts.region, opts.prefix, opts.wait, opts.create) == ("eu-west-1", "app-", 3, False)
    assert broker.capabilities.max_body == max_body(262_144)
    assert isinstance(broker_from_url("sqs://?region=us-east-1"), SqsBroker)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqs://?colour=blue", "unknown SQS broker option 'colour'"),
        ("sqs://?wait=99", "wait must be 0..20"),
        ("sqs://?create=perhaps", "create='perhaps' is not valid"),
        ("sqs://?prefix=a.b", "prefix"),
        ("sqs://somehost:4566", "query string"),
        ("sqs://?max_message_size=2000000", "max_message_size"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SqsBroker(url)


async def test_missing_queue_is_created_with_its_attributes(broker: SqsBroker, queue: str) -> None:
    await broker.publish(queue, [Outgoing(b"x")])
    attributes = await _attributes(broker, queue)
    assert attributes["MessageRetentionPeriod"] == "1209600"
    assert attributes["MaximumMessageSize"] == "262144"
    await broker.publish(f"{queue}.fifo", [Outgoing(b"x")])
    fifo = await _attributes(broker, f"{queue}.fifo")
    assert fifo["FifoQueue"] == "true"


async def test_missing_queue_is_reported_when_creation_is_off(sqs_url: str, queue: str) -> None:
    async with SqsBroker(sqs_url, create=False) as broker:
        with pytest.raises(BrokerError, match=r"does not exist.*create=false"):
            await broker.publish(queue, [Outgoing(b"x")])
        # Reading counts and purging never create anything.
        assert (await broker.stats(queue)).ready == 0
        assert await broker.purge(queue) == 0


async def test_too_large_a_job_is_refused_at_enqueue(sqs_url: str, queue: str) -> None:
    app = App(broker=SqsBroker(sqs_url))

    @app.task(queue=queue)
    async def store(data: bytes) -> None:
        del data

    async with app:
        with pytest.raises(MessageTooLarge, match="at most"):
            await store.enqueue(b"x" * 200_000)
        await store.enqueue(b"x" * 150_000)
        broker = await app.connect()
        assert (await broker.stats(queue)).ready == 1


async def test_too_large_a_body_is_refused_by_publish(broker: SqsBroker, queue: str) -> None:
    with pytest.raises(BrokerError, match="more than the 262144"):
        await broker.publish(queue, [Outgoing(b"x" * 200_000)])


async def test_lease_beyond_the_12_hour_visibility_ceiling_is_refused(
    broker: SqsBroker, queue: str
) -> None:
    with pytest.raises(ConfigurationError, match="12 hours"):
        async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=1, lease=43200):
            pass


async def _take(broker: SqsBroker, queue: str, n: int, ack: Ack, timeout: float = 20) -> list[Any]:
    got: list[Any] = []
    async with broker.consume(queue, ack=ack, prefetch=10, lease=60) as deliveries:
        with anyio.fail_after(timeout):
            async for delivery in deliveries:
                got.append(delivery)
                await delivery.ack()
                if len(got) == n:
                    break
    return got


async def test_fifo_queue_keeps_order_and_deduplicates_by_key(
    broker: SqsBroker, queue: str
) -> None:
    fifo = f"{queue}.fifo"
    bodies = [f"{i:03d}".encode() for i in range(30)]
    for start in range(0, 30, 7):
        await broker.publish(fifo, [Outgoing(b) for b in bodies[start : start + 7]])
    await broker.publish(fifo, [Outgoing(b"once", key="k1"), Outgoing(b"twice", key="k1")])
    got = await _take(broker, fifo, 31, Ack.ON_COMPLETION)
    assert [d.body for d in got] == [*bodies, b"once"]
    assert (await broker.stats(fifo)).ready == 0


async def test_fifo_queue_refuses_delays_and_receipt_mode(broker: SqsBroker, queue: str) -> None:
    fifo = f"{queue}.fifo"
    with pytest.raises(BrokerError, match="no per-message delay"):
        await broker.publish(fifo, [Outgoing(b"later", delay=5)])
    with pytest.raises(ConfigurationError, match="ON_COMPLETION mode only"):
        async with broker.consume(fifo, ack=Ack.ON_RECEIPT, prefetch=1, lease=5):
            pass


@pytest.mark.parametrize("ack", [Ack.ON_RECEIPT, Ack.ON_COMPLETION], ids=["receipt", "completion"])
async def test_a_copy_not_yet_due_waits_without_being_held(
    broker: SqsBroker, queue: str, ack: Ack
) -> None:
    """Delays beyond SQS's 15 minutes travel as copies with a due time; a copy received
    early is sent back for the rest, not handed out, and its attempt does not grow."""
    client = broker._client  # pyright: ignore[reportPrivateUsage]
    due = time.time() + 3
    entry = client.entry(queue, b"later", 0, None, copy_attributes(2, "first-id", due))
    await client.send(queue, [entry])
    await broker.publish(queue, [Outgoing(b"now")])
    got = await _take(broker, queue, 2, ack)
    arrived = time.time()
    assert [d.body for d in got] == [b"now", b"later"]
    assert arrived >= due
    assert (got[1].id, got[1].attempt) == ("first-id", 3)


@pytest.mark.parametrize("ack", [Ack.ON_RECEIPT, Ack.ON_COMPLETION], ids=["receipt", "completion"])
async def test_retry_beyond_15_minutes_is_kept_on_the_server_as_delayed(
    broker: SqsBroker, queue: str, ack: Ack
) -> None:
    await broker.publish(queue, [Outgoing(b"much later")])
    async with broker.consume(queue, ack=ack, prefetch=1, lease=60) as deliveries:
        with anyio.fail_after(20):
            async for delivery in deliveries:
                await delivery.retry(3600)
                break
    stats = await broker.stats(queue)
    assert (stats.ready, stats.delayed, stats.in_flight) == (0, 1, 0)


async def test_partial_batch_failures_are_sent_again(
    broker: SqsBroker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS may refuse some entries of a batch for its own reasons; they are sent again."""
    client = broker._client  # pyright: ignore[reportPrivateUsage]
    real = client.call
    refused = 0

    async def flaky(q: str, op: str, **params: Any) -> Any:
        nonlocal refused
        if op != "send_message_batch" or refused:
            return await real(q, op, **params)
        entries = params.pop("Entries")
        half = len(entries) // 2
        result = await real(q, op, Entries=entries[:half], **params)
        refused = len(entries) - half
        failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
                  for e in entries[half:]]  # fmt: skip
        return {**result, "Failed": failed}

    monkeypatch.setattr(client, "call", flaky)
    await broker.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(10)])
    assert refused == 5
    got = await _take(broker, queue, 10, Ack.ON_COMPLETION)
    assert sorted(d.body for d in got) == sorted(f"m{i}".encode() for i in range(10))


async def test_entries_refused_as_the_senders_fault_raise(
    broker: SqsBroker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = broker._client  # pyright: ignore[reportPrivateUsage]
    real = client.call

    async def refusing(q: str, op: str, **params: Any) -> Any:
        if op != "send_message_batch":
            return await real(q, op, **params)
        failed = [{"Id": e["Id"], "SenderFault": True, "Code": "InvalidMessageContents",
                   "Message": "no"} for e in params["Entries"]]  # fmt: skip
        return {"Successful": [], "Failed": failed}

    monkeypatch.setattr(client, "call", refusing)
    with pytest.raises(BrokerError, match=r"3 message\(s\) refused: InvalidMessageContents"):
        await broker.publish(queue, [Outgoing(b"a"), Outgoing(b"b"), Outgoing(b"c")])


async def test_closing_the_broker_flushes_pending_acks(sqs_url: str, queue: str) -> None:
    async with SqsBroker(sqs_url) as broker:
        await broker.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(25)])
        async with broker.consume(queue, ack=Ack.ON_COMPLETION, prefetch=25, lease=60) as it:
            held = []
            with anyio.fail_after(20):
                async for delivery in it:
                    held.append(delivery)
                    if len(held) == 25:
                        break
            async with anyio.create_task_group() as tg:
                for delivery in held:
                    tg.start_soon(delivery.ack)
    async with SqsBroker(sqs_url) as broker:
        stats = await broker.stats(queue)
        assert (stats.ready, stats.delayed, stats.in_flight) == (0, 0, 0)
