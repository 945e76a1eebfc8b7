"""chute's own Worker on the Redis broker: runs, retries and dead letters, in both modes."""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from chute import Ack, App, Retry, Worker
from chute.broker import dead_queue
from chute_redis import RedisBroker

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[str]:
    name = f"rw{uuid.uuid4().hex[:10]}"
    yield name
    async with aioredis.Redis.from_url(redis_url) as r:
        for q in (name, dead_queue(name)):
            await r.delete(*RedisBroker(redis_url).keys(q).all())


@pytest.mark.parametrize("ack", [Ack.ON_RECEIPT, Ack.ON_COMPLETION], ids=["receipt", "completion"])
async def test_worker_runs_retries_and_dead_letters(redis_url: str, queue: str, ack: Ack) -> None:
    app = App(RedisBroker(redis_url))
    runs: collections.Counter[int] = collections.Counter()

    @app.task(name=f"job-{queue}", queue=queue, ack=ack, max_attempts=2)
    async def job(i: int) -> None:
        runs[i] += 1
        if i == 0 and runs[i] == 1:
            raise Retry(delay=0.2)
        if i == 1:
            raise RuntimeError("always fails")

    async with app:
        await job.enqueue_many([job.call(i) for i in range(200)])
    counts = await Worker(app, concurrency=8, burst=True).run()
    assert counts.succeeded == 199
    assert counts.retried == 2
    assert counts.dead == 1
    assert runs[0] == 2 and runs[1] == 2
    assert all(runs[i] == 1 for i in range(2, 200))
    async with app:
        stats = await app.broker.stats(queue)
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 1)
