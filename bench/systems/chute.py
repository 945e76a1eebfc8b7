"""chute on any of its brokers, in either ack mode: ``App(url)``, ``@app.task``, ``Worker``."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from harness import probe

import chute
from systems.base import SLEEP, Adapter


class ChuteAdapter(Adapter):
    def __init__(self, url: str, queue: str, options: dict[str, Any]) -> None:
        super().__init__(url, queue, options)
        ack = chute.Ack.ON_COMPLETION if options["ack"] == "completion" else chute.Ack.ON_RECEIPT
        if url.startswith("nats://"):
            url += "?namespace=bench"  # stream BENCH, which the harness deletes between runs
        if url.startswith("amqp://"):
            # Servers before 3.11.15 cannot lift consumer_timeout per consumer; chute must be
            # told the server-wide value: RabbitMQ's default, 30 minutes.
            url += "?consumer_timeout=1800"
        self.app = chute.App(url)
        task = self.app.task

        @task(name="noop", queue=queue, ack=ack)
        async def noop(i: int) -> None:
            probe.done()

        @task(name="sleep", queue=queue, ack=ack)
        async def sleep(i: int) -> None:
            await asyncio.sleep(SLEEP)
            probe.done()

        @task(name="stamp", queue=queue, ack=ack)
        async def stamp(i: int, sent: float) -> None:
            probe.stamp(sent)

        self.tasks: dict[str, chute.AsyncTask[..., None]] = {
            "noop": noop,
            "sleep": sleep,
            "stamp": stamp,
        }

    async def open(self) -> None:
        await self.app.connect()

    async def close(self) -> None:
        await self.app.close()

    async def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        t = self.tasks[task]
        if delay:
            await t.options(delay=delay).enqueue(*args)
        else:
            await t.enqueue(*args)

    async def send_batch(
        self, task: str, calls: list[tuple[Any, ...]], delay: float | None
    ) -> None:
        t = self.tasks[task]
        target = t.options(delay=delay) if delay else t
        await target.enqueue_many([target.call(*args) for args in calls])

    def work(self, settings: dict[str, Any]) -> None:
        anyio.run(chute.Worker(self.app, **settings).run)


Adapter = ChuteAdapter
