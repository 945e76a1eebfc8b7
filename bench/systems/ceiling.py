"""The ceiling: the same task bodies at the same concurrency, fed from a list instead of a queue.

Its "worker" runs ``BENCH_TARGET`` bodies of the task ``BENCH_TASK``, on one event loop with N
coroutines (mode ``async``) or in a pool of N threads (mode ``threads``); its producer sends
nothing. What a queue adds on top of these numbers is the queue's cost.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness import probe

from systems.base import SLEEP, Adapter


class CeilingAdapter(Adapter):
    def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        pass

    def send_batch(self, task: str, calls: list[tuple[Any, ...]], delay: float | None) -> None:
        pass

    def work(self, settings: dict[str, Any]) -> None:
        n = int(os.environ["BENCH_TARGET"])
        task = os.environ.get("BENCH_TASK", "noop")
        if self.options["mode"] == "async":
            asyncio.run(_run_async(task, n, settings.get("concurrency", 10)))
        else:
            _run_threads(task, n, settings.get("concurrency", 8))


async def _run_async(task: str, n: int, concurrency: int) -> None:
    todo = iter(range(n))

    async def runner() -> None:
        for _ in todo:
            if task == "sleep":
                await asyncio.sleep(SLEEP)
            probe.done()

    await asyncio.gather(*(runner() for _ in range(concurrency)))


def _run_threads(task: str, n: int, concurrency: int) -> None:
    def body(_: int) -> None:
        if task == "sleep":
            time.sleep(SLEEP)
        probe.done()

    with ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(body, range(n)):
            pass


Adapter = CeilingAdapter
