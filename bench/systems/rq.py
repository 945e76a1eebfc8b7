"""rq: ``Queue(connection=Redis)``, ``queue.enqueue``, ``queue.enqueue_many``, ``Worker.work()``."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from harness import probe
from rq import Queue, SimpleWorker, Worker

from redis import Redis
from systems.base import SLEEP, Adapter


def noop(i: int) -> None:
    probe.done()


def sleep(i: int) -> None:
    time.sleep(SLEEP)
    probe.done()


def stamp(i: int, sent: float) -> None:
    probe.stamp(sent)


_TASKS = {"noop": noop, "sleep": sleep, "stamp": stamp}


class RqAdapter(Adapter):
    def open(self) -> None:
        self.q = Queue(self.queue, connection=Redis.from_url(self.url))

    def close(self) -> None:
        self.q.connection.close()

    def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        if delay:
            self.q.enqueue_in(timedelta(seconds=delay), _TASKS[task], *args)
        else:
            self.q.enqueue(_TASKS[task], *args)

    def send_batch(self, task: str, calls: list[tuple[Any, ...]], delay: float | None) -> None:
        if delay:  # enqueue_many has no delay: one call each
            for args in calls:
                self.send(task, args, delay)
            return
        self.q.enqueue_many([Queue.prepare_data(_TASKS[task], args) for args in calls])

    def work(self, settings: dict[str, Any]) -> None:
        kind = SimpleWorker if settings.get("worker") == "simple" else Worker
        connection = Redis.from_url(self.url)
        kind([Queue(self.queue, connection=connection)], connection=connection).work(
            logging_level="WARNING"
        )


Adapter = RqAdapter
