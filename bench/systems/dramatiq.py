"""dramatiq on Redis or RabbitMQ: ``@dramatiq.actor``, ``actor.send``, ``Worker(broker)``.

One worker process (what ``dramatiq --processes 1`` runs) with the given number of threads.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from harness import probe

from systems.base import SLEEP, Adapter


def _broker(kind: str, url: str) -> dramatiq.Broker:
    if kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    return RabbitmqBroker(url=url)


class DramatiqAdapter(Adapter):
    def __init__(self, url: str, queue: str, options: dict[str, Any]) -> None:
        super().__init__(url, queue, options)
        self.broker = broker = _broker(options["broker"], url)
        dramatiq.set_broker(broker)

        @dramatiq.actor(actor_name="noop", queue_name=queue, broker=broker)
        def noop(i: int) -> None:
            probe.done()

        @dramatiq.actor(actor_name="sleep", queue_name=queue, broker=broker)
        def sleep(i: int) -> None:
            time.sleep(SLEEP)
            probe.done()

        @dramatiq.actor(actor_name="stamp", queue_name=queue, broker=broker)
        def stamp(i: int, sent: float) -> None:
            probe.stamp(sent)

        self.actors = {"noop": noop, "sleep": sleep, "stamp": stamp}

    def close(self) -> None:
        self.broker.close()

    def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        actor = self.actors[task]
        if delay:
            actor.send_with_options(args=args, delay=int(delay * 1000))
        else:
            actor.send(*args)

    def work(self, settings: dict[str, Any]) -> None:
        worker = dramatiq.Worker(self.broker, worker_threads=settings.get("threads", 8))
        worker.start()
        while True:
            time.sleep(3600)


Adapter = DramatiqAdapter
