"""The worker on NATS: retries, the attempt limit, dead letters and long jobs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
from _nats_support import ACK_WAIT, forget_queues, with_options  # pyright: ignore[reportMissingImports]

from chute import Ack, App, Backoff, Worker
from chute.broker import dead_queue
from chute.dead import list_dead
from chute_nats import NatsBroker

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

QUICK = Backoff(base=0.2, factor=1.0, jitter=False)


@pytest.fixture
def url(nats_url: str) -> str:
    return with_options(nats_url, namespace="chutework", ack_wait=ACK_WAIT)


@pytest.fixture
async def queue(url: str) -> AsyncIterator[str]:
    name = f"wk{uuid.uuid4().hex[:10]}"
    yield name
    await forget_queues(url, [name, dead_queue(name)])


@pytest.mark.parametrize("ack", [Ack.ON_COMPLETION, Ack.ON_RECEIPT], ids=["completion", "receipt"])
async def test_failures_retry_then_stop_at_the_limit_in_the_dead_letter_queue(
    url: str, queue: str, ack: Ack
) -> None:
    app = App(NatsBroker(url))
    runs: dict[str, list[int]] = {"flaky": [], "doomed": []}

    @app.task(queue=queue, max_attempts=3, backoff=QUICK, ack=ack)
    async def flaky(name: str) -> None:
        runs[name].append(len(runs[name]) + 1)
        if name == "doomed" or len(runs[name]) < 3:
            raise RuntimeError(f"{name} failed")

    async with app:
        await flaky.enqueue("flaky")
        await flaky.enqueue("doomed")
    worker = Worker(app, concurrency=2, burst=True, lease=ACK_WAIT)
    with anyio.fail_after(60):
        counts = await worker.run()
    assert runs == {"flaky": [1, 2, 3], "doomed": [1, 2, 3]}
    assert (counts.succeeded, counts.retried, counts.dead) == (1, 4, 1)
    async with NatsBroker(url) as broker:
        stats = await broker.stats(queue)
        assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 1)
        (letter,) = await list_dead(broker, queue)
        assert letter.attempts == 3
        assert letter.error == "RuntimeError: doomed failed"


async def test_a_job_longer_than_the_ack_wait_runs_once(url: str, queue: str) -> None:
    app = App(NatsBroker(url))
    started: list[int] = []

    @app.task(queue=queue)
    async def slow() -> None:
        started.append(1)
        await anyio.sleep(3 * ACK_WAIT)

    async with app:
        await slow.enqueue()
    worker = Worker(app, concurrency=1, burst=True, lease=ACK_WAIT)
    with anyio.fail_after(60):
        counts = await worker.run()
    assert (len(started), counts.succeeded) == (1, 1)
