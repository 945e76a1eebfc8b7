"""Time chute on RabbitMQ: enqueue (single calls and batches) and drain 20,000 no-op tasks.

    python bench/rabbitmq_drain.py [--url amqp://guest:guest@127.0.0.1:5672/]
                                   [--jobs 20000] [--concurrency 100] [--profile drain.prof]

Runs both ack modes on queues of their own and deletes nothing but those queues.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import time

import aio_pika
import anyio

from chute import Ack, App, Worker
from chute_rabbitmq import RabbitBroker


def build(url: str, ack: Ack) -> tuple[App, object]:
    app = App(RabbitBroker(url))

    @app.task(name=f"noop-{ack.value}", queue=f"bench-{ack.value}", ack=ack)
    async def noop(i: int) -> None:
        del i

    return app, noop


async def clean(url: str, queue: str) -> None:
    conn = await aio_pika.connect(url.split("?", 1)[0])
    try:
        channel = await conn.channel()
        for q in (queue, f"{queue}.dead"):
            await channel.queue_delete(q)
    finally:
        await conn.close()


async def single(task: object, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await task.enqueue(i)  # type: ignore[attr-defined]
    return n / (time.perf_counter() - start)


async def batch(app: App, task: object, n: int) -> float:
    start = time.perf_counter()
    calls = [task.call(i) for i in range(n)]  # type: ignore[attr-defined]
    await app.enqueue_many(calls)
    return n / (time.perf_counter() - start)


async def drain(app: App, concurrency: int, profile: str | None) -> tuple[float, int]:
    worker = Worker(app, concurrency=concurrency, burst=True)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    counts = await worker.run()
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    return time.perf_counter() - start, counts.succeeded


async def main(ns: argparse.Namespace) -> None:
    for ack in (Ack.ON_COMPLETION, Ack.ON_RECEIPT):
        queue = f"bench-{ack.value}"
        await clean(ns.url, queue)
        app, task = build(ns.url, ack)
        async with app:
            single_rate = await single(task, ns.single)
            await app.broker.purge(queue)
            batch_rate = await batch(app, task, ns.jobs)
        app, task = build(ns.url, ack)
        profile = f"{ns.profile}.{ack.value}" if ns.profile else None
        took, done = await drain(app, ns.concurrency, profile)
        print(
            f"{ack.name:13}  enqueue single {single_rate:8.0f}/s  batch {batch_rate:9.0f}/s  "
            f"drain {done} in {took:.2f} s = {done / took:8.0f}/s"
        )
        await clean(ns.url, queue)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    # consumer_timeout: RabbitMQ before 3.11.15 requires it stated (its default, 30 minutes).
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/?consumer_timeout=1800")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--uvloop", action="store_true")
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    anyio.run(main, args, backend_options={"use_uvloop": args.uvloop})
