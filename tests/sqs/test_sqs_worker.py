"""A chute worker on SQS, end to end: success, retries with backoff, the dead-letter queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest

import chute
from chute.broker import Outgoing
from chute.dead import list_dead
from chute_sqs import SqsBroker

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]


@pytest.fixture
async def queue(delete_queues: Callable[[list[str]], Awaitable[None]]) -> AsyncIterator[str]:
    name = f"w{uuid.uuid4().hex[:12]}"
    yield name
    await delete_queues([name, f"{name}.dead"])


async def test_worker_runs_retries_and_dead_letters_on_sqs(sqs_url: str, queue: str) -> None:
    app = chute.App(SqsBroker(sqs_url))
    attempts: dict[str, list[int]] = {"ok": [], "flaky": [], "broken": []}

    @app.task(queue=queue, max_attempts=3, backoff=chute.Backoff(base=1, jitter=False))
    async def job(kind: str) -> None:
        attempts[kind].append(chute.current_job().attempt)
        if kind == "broken" or (kind == "flaky" and len(attempts["flaky"]) < 2):
            raise RuntimeError(f"{kind} failed")

    async with app:
        for kind in attempts:
            await job.enqueue(kind)
    worker = chute.Worker(app, concurrency=4, lease=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(60):
            while worker.counts.dead < 1 or worker.counts.succeeded < 2:
                await anyio.sleep(0.1)
        worker.stop()
    assert attempts == {"ok": [1], "flaky": [1, 2], "broken": [1, 2, 3]}
    async with SqsBroker(sqs_url) as broker:
        (letter,) = await list_dead(broker, queue)
        assert (letter.reason, letter.attempts) == ("failed", 3)
        assert "broken failed" in letter.error
        stats = await broker.stats(queue)
        assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 1)


async def test_a_second_purge_within_a_minute_still_empties_the_ready_messages(
    sqs_url: str, queue: str
) -> None:
    async with SqsBroker(sqs_url) as broker:
        await broker.publish(queue, [Outgoing(b"a"), Outgoing(b"b")])
        assert await broker.purge(queue) == 2
        await broker.publish(queue, [Outgoing(f"m{i}".encode()) for i in range(23)])
        assert await broker.purge(queue) == 23
        assert (await broker.stats(queue)).ready == 0


async def test_a_task_timeout_beyond_twelve_hours_is_refused_at_worker_start(sqs_url: str) -> None:
    app = chute.App(SqsBroker(sqs_url))

    @app.task(name="marathon", timeout=13 * 3600)
    async def marathon() -> None: ...

    with pytest.raises(chute.ConfigurationError, match="task 'marathon' may run 46800 s"):
        await chute.Worker(app, burst=True).run()
