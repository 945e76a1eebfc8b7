"""Time chute on Redis: enqueue (single calls and batches) and drain 20,000 no-op tasks,
then the start latency of tasks enqueued one by one at a steady rate.

    python bench/redis_drain.py [--url redis://127.0.0.1:6379/14] [--jobs 20000]
                                [--concurrency 100] [--profile drain.prof] [--uvloop]
                                [--rate 500] [--seconds 10]

Runs both ack modes on a queue of its own and flushes nothing but that queue's keys.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import time

import anyio

from chute import Ack, App, Worker, current_job
from chute_redis import RedisBroker


def build(url: str, ack: Ack) -> tuple[App, object]:
    app = App(RedisBroker(url))

    @app.task(name=f"noop-{ack.value}", queue=f"bench-{ack.value}", ack=ack)
    async def noop(i: int) -> None:
        del i

    return app, noop


async def clean(url: str, queue: str) -> None:
    async with RedisBroker(url) as broker:
        for q in (queue, f"{queue}.dead"):
            await broker.client.delete(*broker.keys(q).all())


async def single(app: App, task: object, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await task.enqueue(i)  # type: ignore[attr-defined]
    return n / (time.perf_counter() - start)


async def batch(app: App, task: object, n: int) -> float:
    start = time.perf_counter()
    calls = [task.call(i) for i in range(n)]  # type: ignore[attr-defined]
    await app.enqueue_many(calls)
    return n / (time.perf_counter() - start)


async def drain(
    app: App, concurrency: int, prefetch: int | None, profile: str | None
) -> tuple[float, int]:
    worker = Worker(app, concurrency=concurrency, burst=True, prefetch=prefetch)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    counts = await worker.run()
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    return time.perf_counter() - start, counts.succeeded


async def latency(url: str, rate: float, seconds: float) -> list[float]:
    """Seconds from enqueue to task start, for jobs enqueued one at a time at ``rate``/s
    while a worker runs in the same process."""
    app = App(RedisBroker(url))
    delays: list[float] = []

    @app.task(name="latency", queue="bench-latency")
    async def probe() -> None:
        delays.append(time.time() - current_job().enqueued_at)

    worker = Worker(app, concurrency=10)
    producer = App(RedisBroker(url))
    async with anyio.create_task_group() as tg, producer:
        tg.start_soon(worker.run)
        ref = producer.task_ref("latency", queue="bench-latency")
        await anyio.sleep(0.5)
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            await anyio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            await ref.enqueue()
        while len(delays) < int(rate * seconds):
            await anyio.sleep(0.01)
        worker.stop()
    await clean(url, "bench-latency")
    return sorted(delays)


async def main(ns: argparse.Namespace) -> None:
    for ack in (Ack.ON_COMPLETION, Ack.ON_RECEIPT):
        queue = f"bench-{ack.value}"
        await clean(ns.url, queue)
        app, task = build(ns.url, ack)
        async with app:
            single_rate = await single(app, task, ns.single)
            await app.broker.purge(queue)
            batch_rate = await batch(app, task, ns.jobs)
        app, task = build(ns.url, ack)
        profile = f"{ns.profile}.{ack.value}" if ns.profile else None
        took, done = await drain(app, ns.concurrency, ns.prefetch, profile)
        print(
            f"{ack.name:13}  enqueue single {single_rate:8.0f}/s  batch {batch_rate:9.0f}/s  "
            f"drain {done} in {took:.2f} s = {done / took:8.0f}/s"
        )
        await clean(ns.url, queue)
    if ns.rate:
        d = await latency(ns.url, ns.rate, ns.seconds)
        pick = lambda q: d[min(len(d) - 1, int(q * len(d)))] * 1000  # noqa: E731
        print(
            f"latency at {ns.rate:.0f}/s over {len(d)} jobs: p50 {pick(0.5):.2f} ms  "
            f"p99 {pick(0.99):.2f} ms  max {d[-1] * 1000:.2f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    anyio.run(main, args, backend_options={"use_uvloop": args.uvloop})
