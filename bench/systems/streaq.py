"""streaq: ``Worker(redis_url=...)``, ``@worker.task``, ``task.enqueue()``, ``enqueue_many``."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import probe
from streaq import Worker

from systems.base import SLEEP, Adapter


def _worker(url: str, queue: str, **settings: Any) -> tuple[Worker[Any], dict[str, Any]]:
    worker: Worker[Any] = Worker(redis_url=url, queue_name=queue, **settings)

    @worker.task(name="noop")
    async def noop(i: int) -> None:
        probe.done()

    @worker.task(name="sleep")
    async def sleep(i: int) -> None:
        await asyncio.sleep(SLEEP)
        probe.done()

    @worker.task(name="stamp")
    async def stamp(i: int, sent: float) -> None:
        probe.stamp(sent)

    return worker, {"noop": noop, "sleep": sleep, "stamp": stamp}


class StreaqAdapter(Adapter):
    async def open(self) -> None:
        self.worker, self.tasks = _worker(self.url, self.queue)
        await self.worker.__aenter__()

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)

    async def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        pending = self.tasks[task].enqueue(*args)
        if delay:
            pending = pending.start(delay=int(delay))
        await pending

    async def send_batch(
        self, task: str, calls: list[tuple[Any, ...]], delay: float | None
    ) -> None:
        tasks = [self.tasks[task].enqueue(*args) for args in calls]
        if delay:
            # enqueue_many is documented for immediate tasks only.
            for pending in tasks:
                await pending.start(delay=int(delay))
            return
        await self.worker.enqueue_many(tasks)

    def work(self, settings: dict[str, Any]) -> None:
        worker, _ = _worker(self.url, self.queue, **settings)
        worker.run_sync()


Adapter = StreaqAdapter
