"""Time chute on NATS: enqueue (single calls and batches) and drain 20,000 no-op tasks.

    python bench/nats_drain.py [--url nats://127.0.0.1:4222] [--jobs 20000]
                               [--concurrency 100] [--core] [--profile drain.prof]

JetStream mode runs both ack modes on a namespace of its own (``chutebench``), whose stream
it deletes afterwards; ``--core`` adds core NATS mode (``ON_RECEIPT`` only), where the worker
must listen before anything is published, so its enqueue and drain overlap.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import time
from typing import Any

import anyio

from chute import Ack, App, Worker
from chute_nats import NatsBroker
from chute_nats._connection import Connection
from chute_nats._settings import parse

NAMESPACE = "chutebench"


def build(url: str, ack: Ack, **options: Any) -> tuple[App, Any]:
    app = App(NatsBroker(url, namespace=NAMESPACE, **options))

    @app.task(name=f"noop-{ack.value}", queue=f"bench-{ack.value}", ack=ack)
    async def noop(i: int) -> None:
        del i

    return app, noop


async def drop_stream(url: str) -> None:
    conn = Connection(parse(url, {"namespace": NAMESPACE}))
    await conn.open()
    try:
        await conn.api(f"STREAM.DELETE.{conn.settings.stream}", missing_ok=True)
    finally:
        await conn.close()


async def single(task: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await task.enqueue(i)
    return n / (time.perf_counter() - start)


async def batch(app: App, task: Any, n: int) -> float:
    start = time.perf_counter()
    await app.enqueue_many([task.call(i) for i in range(n)])
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


async def jetstream(ns: argparse.Namespace) -> None:
    await drop_stream(ns.url)
    for ack in (Ack.ON_COMPLETION, Ack.ON_RECEIPT):
        queue = f"bench-{ack.value}"
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
    await drop_stream(ns.url)


async def core(ns: argparse.Namespace) -> None:
    """Core NATS keeps nothing for absent workers: start the worker, then publish."""
    app, _ = build(ns.url, Ack.ON_RECEIPT, jetstream=False)
    worker = Worker(app, concurrency=ns.concurrency)
    producer, ptask = build(ns.url, Ack.ON_RECEIPT, jetstream=False)
    async with anyio.create_task_group() as tg, producer:
        tg.start_soon(worker.run)
        await anyio.sleep(1.0)  # let the worker subscribe before anything is published
        start = time.perf_counter()
        await producer.enqueue_many([ptask.call(i) for i in range(ns.jobs)])
        published = time.perf_counter() - start
        while worker.counts.succeeded < ns.jobs:
            await anyio.sleep(0.01)
        took = time.perf_counter() - start
        worker.stop()
    print(
        f"{'core ON_RECEIPT':13}  publish {ns.jobs / published:9.0f}/s  "
        f"publish+drain {ns.jobs} in {took:.2f} s = {ns.jobs / took:8.0f}/s"
    )


async def main(ns: argparse.Namespace) -> None:
    await jetstream(ns)
    if ns.core:
        await core(ns)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--core", action="store_true")
    parser.add_argument("--profile", default=None)
    logging.basicConfig(level=logging.WARNING)
    anyio.run(main, parser.parse_args())
