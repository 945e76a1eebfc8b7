"""Celery: ``Celery(broker=url)``, ``@app.task``, ``apply_async``, ``app.worker_main([...])``."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from harness import probe

from systems.base import SLEEP, Adapter


class CeleryAdapter(Adapter):
    def __init__(self, url: str, queue: str, options: dict[str, Any]) -> None:
        super().__init__(url, queue, options)
        self.app = app = Celery("bench", broker=url)
        app.conf.task_default_queue = queue
        app.conf.task_acks_late = options["acks_late"]

        @app.task(name="noop")
        def noop(i: int) -> None:
            probe.done()

        @app.task(name="sleep")
        def sleep(i: int) -> None:
            time.sleep(SLEEP)
            probe.done()

        @app.task(name="stamp")
        def stamp(i: int, sent: float) -> None:
            probe.stamp(sent)

        self.tasks = {"noop": noop, "sleep": sleep, "stamp": stamp}

    def close(self) -> None:
        self.app.close()

    def send(self, task: str, args: tuple[Any, ...], delay: float | None) -> None:
        self.tasks[task].apply_async(args, countdown=delay)

    def work(self, settings: dict[str, Any]) -> None:
        argv = ["worker", "--loglevel=WARNING", "-Q", self.queue]
        if "pool" in settings:
            argv += ["--pool", settings["pool"]]
        if "concurrency" in settings:
            argv += ["--concurrency", str(settings["concurrency"])]
        self.app.worker_main(argv)


Adapter = CeleryAdapter
