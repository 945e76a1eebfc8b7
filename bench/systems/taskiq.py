"""taskiq with its Redis list and stream brokers, its NATS JetStream broker, its RabbitMQ broker.

``@broker.task``, ``await task.kiq(...)``, and one worker process through
``taskiq.api.run_receiver_task`` (what ``taskiq worker --workers 1`` runs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from harness import probe
from taskiq import AsyncBroker
from taskiq.api import run_receiver_task

from systems.base import SLEEP, Adapter, Unsupported


def _broker(kind: str, url: str, queue: str) -> AsyncBroker:
    if kind == "list":
        from taskiq_redis import ListQueueBroker

        return ListQueueBroker(url, queue_name=queue)
    if kind == "stream":
        from taskiq_redis import RedisStreamBroker

        return RedisStreamBroker(url, queue_name=queue)
    if kind == "nats":
        from taskiq_nats import PullBasedJetStreamBroker

        return PullBasedJetStreamBroker(
            url, subject=f"{queue}.taskiq", stream_name="BENCH_TASKIQ", durable=f"{queue}_taskiq"
        )
    if kind == "rabbitmq":
        from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

        return AioPikaBroker(
            url,
            exchange=Exchange(name=f"{queue}_exchange"),
            task_queues=[Queue(name=queue)],
            dead_letter_queue=Queue(name=f"{queue}.dead"),
            delay_queue=Queue(name=f"{queue}.delay"),
        )
    raise ValueError(kind)


class TaskiqAdapter(Adapter):
    def __init__(self, url: str, queue: str, options: dict[str, Any]) -> None:
        super().__init__(url, queue, options)
        self.broker = broker = _broker(options["broker"], url, queue)

        @broker.task(task_name="noop")
        async def noop(i: int) -> None:
            probe.done()

        @broker.task(task_name="sleep")
        async def sleep(i: int) -> None:
            await asyncio.sleep(SLEEP)
            probe.done()

        @broker.task(task_name="stamp")
        async def stamp(i: int, sent: float) -> None:
            probe.stamp(sent)

        self.tasks = {"noop": noop, "sleep": sleep, "stamp": stamp}

    async def open(self) -> None:
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        if delay:
            if self.options["broker"] != "rabbitmq":
                raise Unsupported("no delayed tasks without a separate scheduler")
            await self.tasks[task].kicker().with_labels(delay=delay).kiq(*args)
            return
        await self.tasks[task].kiq(*args)

    def work(self, settings: dict[str, Any]) -> None:
        asyncio.run(run_receiver_task(self.broker, run_startup=True, **settings))


Adapter = TaskiqAdapter
