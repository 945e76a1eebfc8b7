"""saq: ``Queue.from_url``, ``queue.enqueue(name, **kwargs)``, ``Worker(queue, functions)``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import probe
from saq import Queue, Worker

from systems.base import SLEEP, Adapter


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    probe.done()


async def sleep(ctx: dict[str, Any], *, i: int) -> None:
    await asyncio.sleep(SLEEP)
    probe.done()


async def stamp(ctx: dict[str, Any], *, i: int, sent: float) -> None:
    probe.stamp(sent)


class SaqAdapter(Adapter):
    queue_: Queue

    async def open(self) -> None:
        self.queue_ = Queue.from_url(self.url, name=self.queue)
        await self.queue_.connect()

    async def close(self) -> None:
        await self.queue_.disconnect()

    async def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        kwargs: dict[str, Any] = dict(zip(("i", "sent"), args, strict=False))
        if delay:
            kwargs["scheduled"] = int(time.time() + delay)
        await self.queue_.enqueue(task, **kwargs)

    def work(self, settings: dict[str, Any]) -> None:
        async def main() -> None:
            queue = Queue.from_url(self.url, name=self.queue)
            await queue.connect()
            await Worker(queue, functions=[noop, sleep, stamp], **settings).start()

        asyncio.run(main())


Adapter = SaqAdapter
