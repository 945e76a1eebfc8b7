"""The worker in-process, on the memory broker: outcomes, retries, dead letters, bad input."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest

import chute
from chute.broker import Capabilities, Outgoing
from chute.brokers import MemoryBroker
from chute.dead import list_dead
from chute.message import Envelope, encode_envelope

pytestmark = [pytest.mark.memory, pytest.mark.anyio]

FAST = chute.Backoff(base=0.01, maximum=0.02)


async def run_until(
    app: chute.App, done: Callable[[], Awaitable[bool] | bool], timeout: float = 10, **opts: float
) -> chute.Worker:
    """Run a worker until ``done()`` holds, then stop it gracefully."""
    worker = chute.Worker(app, **opts)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(timeout):
            while True:
                result = done()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    break
                await anyio.sleep(0.01)
        worker.stop()
    return worker


async def test_async_and_sync_tasks_run_with_decoded_arguments() -> None:
    app = chute.App(MemoryBroker())
    seen: list[object] = []

    @app.task
    async def add(x: int, y: int) -> int:
        seen.append(("add", x + y))
        return x + y

    @app.task
    def shout(word: str) -> str:
        seen.append(
            ("shout", word.upper(), threading.current_thread() is not threading.main_thread())
        )
        return word.upper()

    await add.enqueue(2, 3)
    await shout.enqueue("hey")
    worker = await run_until(app, lambda: len(seen) == 2)
    assert sorted(seen, key=str) == [("add", 5), ("shout", "HEY", True)]
    assert worker.counts.succeeded == 2


async def test_failure_retries_with_backoff_then_dead_letters_with_traceback() -> None:
    app = chute.App(MemoryBroker())
    attempts: list[int] = []

    @app.task(name="flaky", max_attempts=3, backoff=FAST)
    async def flaky() -> None:
        attempts.append(chute.current_job().attempt)
        raise RuntimeError("boom")

    await flaky.enqueue()

    async def dead() -> bool:
        return (await app.broker.stats("default")).dead == 1

    worker = await run_until(app, dead)
    assert attempts == [1, 2, 3]
    assert worker.counts.retried == 2 and worker.counts.dead == 1
    (letter,) = await list_dead(app.broker, "default")
    assert letter.task == "flaky"
    assert letter.attempts == 3
    assert letter.error == "RuntimeError: boom"
    assert "raise RuntimeError" in letter.traceback


async def test_success_after_a_retry() -> None:
    app = chute.App(MemoryBroker())
    attempts: list[int] = []

    @app.task(max_attempts=3, backoff=FAST)
    async def once_bad() -> None:
        attempts.append(chute.current_job().attempt)
        if len(attempts) == 1:
            raise ConnectionError("try again")

    await once_bad.enqueue()
    worker = await run_until(app, lambda: len(attempts) == 2)
    assert worker.counts.succeeded == 1 and worker.counts.dead == 0


async def test_retry_signal_uses_its_delay() -> None:
    app = chute.App(MemoryBroker())
    times: list[float] = []

    @app.task(max_attempts=2)
    async def later() -> None:
        times.append(time.monotonic())
        if len(times) == 1:
            raise chute.Retry(delay=0.3)

    await later.enqueue()
    await run_until(app, lambda: len(times) == 2)
    assert times[1] - times[0] >= 0.29


async def test_timeouts_count_as_failed_attempts() -> None:
    app = chute.App(MemoryBroker())

    @app.task(name="slow_async", timeout=0.05, max_attempts=1)
    async def slow_async() -> None:
        await anyio.sleep(10)

    @app.task(name="slow_sync", timeout=0.05, max_attempts=1)
    def slow_sync() -> None:
        time.sleep(0.5)

    await slow_async.enqueue()
    await slow_sync.enqueue()

    async def both_dead() -> bool:
        return (await app.broker.stats("default")).dead == 2

    await run_until(app, both_dead)
    errors = sorted(d.error for d in await list_dead(app.broker, "default"))
    assert errors == ["timed out after 0.05 s", "timed out after 0.05 s"]


async def test_bad_input_goes_to_the_dead_letter_queue_and_the_worker_carries_on() -> None:
    app = chute.App(MemoryBroker())
    ran: list[int] = []

    @app.task(name="good")
    async def good(n: int) -> None:
        ran.append(n)

    broker = app.broker
    await broker.publish("default", [Outgoing(b"\x00not msgpack at all")])
    ghost = Envelope(id="g1", task="ghost", queue="default")
    await broker.publish("default", [Outgoing(encode_envelope(ghost))])
    producer = chute.App(broker)  # knows no tasks, so it cannot check the arguments
    await producer.enqueue("good", "not an int")
    await good.enqueue(7)

    async def three_dead() -> bool:
        return (await broker.stats("default")).dead == 3

    await run_until(app, lambda: bool(ran) and three_dead())
    reasons = sorted(d.reason for d in await list_dead(broker, "default"))
    assert reasons == ["arguments do not fit the task", "undecodable message", "unknown task"]
    assert ran == [7]


async def test_task_ref_enqueues_without_the_code() -> None:
    worker_app = chute.App(MemoryBroker())
    got: list[str] = []

    @worker_app.task(name="emails.send")
    async def send(to: str, subject: str = "") -> None:
        got.append(f"{to}:{subject}")

    producer = chute.App(worker_app.broker)  # same broker, no task registered
    await producer.task_ref("emails.send").enqueue("a@b.c", subject="hi")
    await run_until(worker_app, lambda: got == ["a@b.c:hi"])


async def test_resources_hooks_and_current_job() -> None:
    app = chute.App(MemoryBroker())
    events: list[str] = []

    async def client() -> AsyncIterator[dict[str, int]]:
        events.append("open")
        yield {"calls": 0}
        events.append("close")

    @app.on_startup
    def started() -> None:
        events.append("startup")

    @app.on_shutdown
    async def stopped() -> None:
        events.append("shutdown")

    @app.task
    async def use_it(n: int, http: dict[str, int] = chute.use(client)) -> None:
        http["calls"] += 1
        events.append(f"job {chute.current_job().task.rsplit('.', 1)[-1]} {n} {http['calls']}")

    await use_it.enqueue(1)
    await use_it.enqueue(2)
    await run_until(app, lambda: sum(e.startswith("job") for e in events) == 2)
    assert events == ["open", "startup", "job use_it 1 1", "job use_it 2 2", "shutdown", "close"]


async def test_concurrency_limit_is_respected() -> None:
    app = chute.App(MemoryBroker())
    running = peak = done = 0

    @app.task
    async def work() -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.02)
        running -= 1
        done += 1

    await work.enqueue_many([work.call() for _ in range(30)])
    await run_until(app, lambda: done == 30, concurrency=4)
    assert peak == 4


async def test_delays_beyond_the_broker_limit_are_split_by_core() -> None:
    class ShortDelays(MemoryBroker):
        @property
        def capabilities(self) -> Capabilities:
            return dataclasses.replace(super().capabilities, max_delay=0.2)

    app = chute.App(ShortDelays())
    ran: list[float] = []

    @app.task
    async def tick() -> None:
        ran.append(time.monotonic())

    start = time.monotonic()
    await tick.options(delay=0.7).enqueue()
    await run_until(app, lambda: bool(ran))
    assert ran[0] - start >= 0.69


async def test_burst_mode_drains_and_returns() -> None:
    app = chute.App(MemoryBroker())
    count = 0

    @app.task
    async def inc() -> None:
        nonlocal count
        count += 1

    await inc.enqueue_many([inc.call() for _ in range(50)])
    with anyio.fail_after(10):
        counts = await chute.Worker(app, burst=True).run()
    assert count == 50 and counts.succeeded == 50


async def test_graceful_stop_releases_waiting_jobs_and_cancels_after_grace() -> None:
    app = chute.App(MemoryBroker())
    started = anyio.Event()

    @app.task
    async def forever() -> None:
        started.set()
        await anyio.sleep(60)

    await forever.enqueue_many([forever.call() for _ in range(3)])
    worker = chute.Worker(app, concurrency=1, grace=0.2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            worker.stop()
    # prefetch is 2 x concurrency: one job cancelled after the grace, one waiting, one never
    # fetched. The two the worker held go back, attempt unchanged.
    assert worker.counts.released == 2
    stats = await app.broker.stats("default")
    assert (stats.ready, stats.in_flight) == (3, 0)


async def test_task_timeouts_beyond_the_brokers_longest_lease_are_refused_at_start() -> None:
    class Capped(MemoryBroker):
        @property
        def capabilities(self) -> Capabilities:
            return dataclasses.replace(super().capabilities, max_lease=3600)

    app = chute.App(Capped())

    @app.task(name="long", timeout=7200)
    async def long() -> None: ...

    with pytest.raises(chute.ConfigurationError, match="task 'long' may run 7200 s"):
        await chute.Worker(app, burst=True).run()
    with pytest.raises(chute.ConfigurationError, match="--lease 7200 is too long"):
        await chute.Worker(app, lease=7200, queues=["other"], burst=True).run()
    # A worker that does not consume the long task's queue is fine.
    await chute.Worker(app, queues=["other"], burst=True).run()
