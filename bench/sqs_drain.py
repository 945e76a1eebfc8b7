"""Time chute on SQS: enqueue 2,000 no-op tasks in batches, then drain them with a worker.

    python bench/sqs_drain.py [--url sqs://?region=...&endpoint=...] [--jobs 2000]
                              [--concurrency 50]

Without ``--url`` it starts a local moto server (the tests' wrapper, ``tests/sqs/_sqs_moto.py``)
on a free loopback port with fake credentials. moto answers each request in milliseconds on
one Python process, far from what SQS does, so this is a smoke measure of the broker's
overhead and request pattern, not of SQS.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio

from chute import Ack, App, Worker
from chute_sqs import SqsBroker

ROOT = Path(__file__).resolve().parents[1]


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sqs" / "_sqs_moto.py"), "-H", "127.0.0.1",
         "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"sqs://?region=us-east-1&endpoint=http://127.0.0.1:{port}&prefix=bench-"


def build(url: str, ack: Ack) -> tuple[App, object]:
    app = App(SqsBroker(url))

    @app.task(name=f"noop-{ack.value}", queue=f"bench-{ack.value}", ack=ack)
    async def noop(i: int) -> None:
        del i

    return app, noop


async def main(ns: argparse.Namespace) -> None:
    for ack in (Ack.ON_COMPLETION, Ack.ON_RECEIPT):
        app, task = build(ns.url, ack)
        async with app:
            await app.broker.purge(f"bench-{ack.value}")
            start = time.perf_counter()
            await app.enqueue_many([task.call(i) for i in range(ns.jobs)])  # type: ignore[attr-defined]
            enqueue_rate = ns.jobs / (time.perf_counter() - start)
        app, task = build(ns.url, ack)
        worker = Worker(app, concurrency=ns.concurrency, burst=True)
        start = time.perf_counter()
        counts = await worker.run()
        took = time.perf_counter() - start
        print(
            f"{ack.name:13}  enqueue (batched) {enqueue_rate:7.0f}/s  "
            f"drain {counts.succeeded} in {took:.2f} s = {counts.succeeded / took:6.0f}/s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=None)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=50)
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    moto = None
    if args.url is None:
        moto, args.url = start_moto()
    try:
        anyio.run(main, args)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
