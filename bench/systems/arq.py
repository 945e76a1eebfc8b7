"""arq: ``create_pool(RedisSettings)``, ``enqueue_job``, ``Worker(functions=...)``."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import Worker, create_pool
from arq.connections import ArqRedis, RedisSettings
from harness import probe

from systems.base import SLEEP, Adapter


async def noop(ctx: dict[str, Any], i: int) -> None:
    probe.done()


async def sleep(ctx: dict[str, Any], i: int) -> None:
    await asyncio.sleep(SLEEP)
    probe.done()


async def stamp(ctx: dict[str, Any], i: int, sent: float) -> None:
    probe.stamp(sent)


class ArqAdapter(Adapter):
    pool: ArqRedis

    async def open(self) -> None:
        self.pool = await create_pool(
            RedisSettings.from_dsn(self.url), default_queue_name=self.queue
        )

    async def close(self) -> None:
        await self.pool.aclose()

    async def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        await self.pool.enqueue_job(task, *args, _defer_by=delay)

    def work(self, settings: dict[str, Any]) -> None:
        Worker(
            functions=[noop, sleep, stamp],
            redis_settings=RedisSettings.from_dsn(self.url),
            queue_name=self.queue,
            **settings,
        ).run()


Adapter = ArqAdapter
