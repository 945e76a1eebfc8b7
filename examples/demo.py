"""The demo: a real worker process and a producer on the embedded SQLite broker.

Run it with ``nox -s demo`` (or ``python examples/demo.py`` from any directory). It enqueues a
few hundred jobs, some of which fail and are retried and one of which is dead-lettered, waits
for the worker to finish them, stops the worker with SIGTERM, and reports what happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quickstart import app, charge, report, thumbnail  # noqa: E402

from chute.dead import list_dead  # noqa: E402


async def produce() -> float:
    started = time.perf_counter()
    await thumbnail.enqueue_many([thumbnail.call(i, width=480) for i in range(200)])
    await charge.enqueue_many([charge.call(order_id=i, cents=100 * i) for i in range(100)])
    await report.enqueue("2026-11-21")
    return time.perf_counter() - started


async def wait_until_done(timeout: float) -> None:
    with anyio.fail_after(timeout):
        while True:
            stats = await app.broker.stats("default")
            if stats.ready == stats.delayed == stats.in_flight == 0 and stats.dead >= 1:
                return
            await anyio.sleep(0.05)


async def main() -> None:
    for leftover in Path().glob("chute.sqlite3*"):
        leftover.unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "chute", "worker", "quickstart:app", "-c", "20"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        async with app:
            enqueue_time = await produce()
            print(f"enqueued 301 jobs in {enqueue_time * 1000:.0f} ms")
            started = time.perf_counter()
            await wait_until_done(60)
            elapsed = time.perf_counter() - started
            print(f"the worker finished them {elapsed:.2f} s later ({301 / elapsed:.0f} jobs/s)")
            dead = await list_dead(app.broker, "default")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=60)
    retries = [line for line in log.splitlines() if "retrying in" in line]
    print(f"{len(retries)} attempts failed and were retried, for example:")
    print("   ", retries[0].split("] ", 1)[1] if retries else "(none)")
    for letter in dead:
        print(f"dead-lettered: {letter.task} after {letter.attempts} attempts: {letter.error}")
    print("worker:", log.strip().splitlines()[-1].split("] ", 1)[1])
    print(f"worker exit status after SIGTERM: {worker.returncode}")
    if worker.returncode != 0 or len(dead) != 1:
        raise SystemExit("the demo did not go as expected; see the log above")


if __name__ == "__main__":
    anyio.run(main)
