"""The systems under test: one entry per row of the results, one short adapter module per project.

An entry names the adapter module and its options, the server it needs, the distributions it
imports, its delivery semantics as its own documentation states them, and the worker settings
of its "tuned" and I/O variants. Nothing here imports a peer: the harness checks what is
installed and imports an adapter only inside the processes that run it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SYSTEMS", "System", "select"]

AT_LEAST_ONCE = "at-least-once"
AT_MOST_ONCE = "at-most-once"
REFERENCE = "reference"


@dataclass(frozen=True)
class System:
    """One row of the results.

    Attributes:
        id: the row's name, also what ``--systems`` matches.
        project: the project measured (``chute`` or a peer).
        broker: the server kind: ``sqlite``, ``redis``, ``nats``, ``rabbitmq``, ``sqs`` or
            ``none`` (the ceilings).
        semantics: at-least-once / at-most-once as the project documents its configuration
            here, or ``reference`` for the ceilings.
        module: the adapter module under ``systems``.
        options: passed to the adapter (ack mode, broker class...).
        requires: distributions that must be installed.
        default: ``tuned`` and ``io`` are the worker settings of W2-tuned and W3; ``default``
            is always the project's own defaults (empty).
        tuned: worker settings of the W2 "tuned concurrency" variant.
        io: worker settings of W3 (concurrency 100, or the closest the project offers).
        note: what the settings mean for this project, for the report.
        by_default: run without ``--systems``.
    """

    id: str
    project: str
    broker: str
    semantics: str
    module: str
    options: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    tuned: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    by_default: bool = True


_C100 = {"concurrency": 100}


def _chute(broker: str, requires: tuple[str, ...]) -> list[System]:
    return [
        System(
            id=f"chute-{broker}-{ack}",
            project="chute",
            broker=broker,
            semantics=semantics,
            module="systems.chute",
            options={"ack": ack},
            requires=("chute", *requires),
            tuned=_C100,
            io=_C100,
            note=f"Ack.ON_{ack.upper()}; default concurrency 10 (prefetch 20); tuned 100",
        )
        for ack, semantics in (("completion", AT_LEAST_ONCE), ("receipt", AT_MOST_ONCE))
    ]


SYSTEMS: list[System] = [
    *_chute("sqlite", ()),
    *_chute("redis", ("chute-redis",)),
    *_chute("nats", ("chute-nats",)),
    *_chute("rabbitmq", ("chute-rabbitmq",)),
    *_chute("sqs", ("chute-sqs",)),
    System(
        id="arq",
        project="arq",
        broker="redis",
        semantics=AT_LEAST_ONCE,
        module="systems.arq",
        requires=("arq",),
        tuned={"max_jobs": 100},
        io={"max_jobs": 100},
        note="max_jobs 10, poll_delay 0.5 s, results kept 1 h; tuned max_jobs 100",
    ),
    System(
        id="saq",
        project="saq",
        broker="redis",
        semantics=AT_MOST_ONCE,
        module="systems.saq",
        requires=("saq",),
        tuned=_C100,
        io=_C100,
        note="concurrency 10, retries=1 (a job lost by a dead worker is swept, not rerun); "
        "tuned concurrency 100",
    ),
    System(
        id="streaq",
        project="streaq",
        broker="redis",
        semantics=AT_LEAST_ONCE,
        module="systems.streaq",
        requires=("streaq",),
        tuned=_C100,
        io=_C100,
        note="concurrency 16, Redis streams with idle reclaim; tuned concurrency 100",
    ),
    System(
        id="taskiq-redis-list",
        project="taskiq",
        broker="redis",
        semantics=AT_MOST_ONCE,
        module="systems.taskiq",
        options={"broker": "list"},
        requires=("taskiq", "taskiq-redis"),
        tuned={"max_async_tasks": 100},
        io={"max_async_tasks": 100},
        note="ListQueueBroker (BRPOP), one worker process, max_async_tasks 100 (its default)",
    ),
    System(
        id="taskiq-redis-stream",
        project="taskiq",
        broker="redis",
        semantics=AT_LEAST_ONCE,
        module="systems.taskiq",
        options={"broker": "stream"},
        requires=("taskiq", "taskiq-redis"),
        tuned={"max_async_tasks": 100},
        io={"max_async_tasks": 100},
        note="RedisStreamBroker (consumer group, ack after the task), one worker process, "
        "max_async_tasks 100 (its default)",
    ),
    System(
        id="dramatiq-redis",
        project="dramatiq",
        broker="redis",
        semantics=AT_LEAST_ONCE,
        module="systems.dramatiq",
        options={"broker": "redis"},
        requires=("dramatiq", "redis"),
        tuned={"threads": 16},
        io={"threads": 100},
        note="one process, 8 threads (the CLI default per process); tuned 16 threads",
    ),
    System(
        id="celery-redis",
        project="celery",
        broker="redis",
        semantics=AT_MOST_ONCE,
        module="systems.celery",
        options={"acks_late": False},
        requires=("celery", "redis"),
        tuned={"pool": "threads", "concurrency": 16},
        io={"pool": "threads", "concurrency": 100},
        note="prefork pool, concurrency = cores, early acks; tuned: threads pool, 16",
    ),
    System(
        id="celery-redis-acks-late",
        project="celery",
        broker="redis",
        semantics=AT_LEAST_ONCE,
        module="systems.celery",
        options={"acks_late": True},
        requires=("celery", "redis"),
        tuned={"pool": "threads", "concurrency": 16},
        io={"pool": "threads", "concurrency": 100},
        note="as celery-redis with task_acks_late=True",
    ),
    System(
        id="rq",
        project="rq",
        broker="redis",
        semantics=AT_MOST_ONCE,
        module="systems.rq",
        requires=("rq",),
        tuned={"worker": "simple"},
        io={},
        note="Worker: one job at a time, a forked work horse per job; tuned: SimpleWorker "
        "(no fork). No concurrency within a process, so no W3",
    ),
    System(
        id="taskiq-nats",
        project="taskiq",
        broker="nats",
        semantics=AT_LEAST_ONCE,
        module="systems.taskiq",
        options={"broker": "nats"},
        requires=("taskiq", "taskiq-nats"),
        tuned={"max_async_tasks": 100},
        io={"max_async_tasks": 100},
        note="PullBasedJetStreamBroker, one worker process, max_async_tasks 100 (its default)",
    ),
    System(
        id="taskiq-rabbitmq",
        project="taskiq",
        broker="rabbitmq",
        semantics=AT_LEAST_ONCE,
        module="systems.taskiq",
        options={"broker": "rabbitmq"},
        requires=("taskiq", "taskiq-aio-pika"),
        tuned={"max_async_tasks": 100},
        io={"max_async_tasks": 100},
        note="AioPikaBroker, one worker process, max_async_tasks 100 (its default)",
    ),
    System(
        id="dramatiq-rabbitmq",
        project="dramatiq",
        broker="rabbitmq",
        semantics=AT_LEAST_ONCE,
        module="systems.dramatiq",
        options={"broker": "rabbitmq"},
        requires=("dramatiq", "pika"),
        tuned={"threads": 16},
        io={"threads": 100},
        note="one process, 8 threads; tuned 16 threads. Publishes without publisher confirms "
        "(its default), so an enqueue returns before RabbitMQ has stored the message",
    ),
    System(
        id="celery-rabbitmq",
        project="celery",
        broker="rabbitmq",
        semantics=AT_MOST_ONCE,
        module="systems.celery",
        options={"acks_late": False},
        requires=("celery",),
        tuned={"pool": "threads", "concurrency": 16},
        io={"pool": "threads", "concurrency": 100},
        note="prefork pool, concurrency = cores, early acks; tuned: threads pool, 16",
        by_default=False,
    ),
    System(
        id="ceiling-async",
        project="ceiling",
        broker="none",
        semantics=REFERENCE,
        module="systems.ceiling",
        options={"mode": "async"},
        tuned=_C100,
        io=_C100,
        note="the task bodies alone on one event loop, no queue: concurrency 10, tuned 100",
    ),
    System(
        id="ceiling-threads",
        project="ceiling",
        broker="none",
        semantics=REFERENCE,
        module="systems.ceiling",
        options={"mode": "threads"},
        tuned={"concurrency": 16},
        io=_C100,
        note="the task bodies alone in a thread pool, no queue: 8 threads, tuned 16",
    ),
]

_BY_ID = {s.id: s for s in SYSTEMS}


def get(system_id: str) -> System:
    """The entry named ``system_id``."""
    return _BY_ID[system_id]


def select(patterns: list[str] | None) -> list[System]:
    """Entries matching any of ``patterns`` (shell-style), in table order; default set if none.

    Raises:
        ValueError: a pattern matches nothing.
    """
    if not patterns:
        return [s for s in SYSTEMS if s.by_default]
    chosen: list[System] = []
    for pattern in patterns:
        hits = [s for s in SYSTEMS if fnmatch.fnmatchcase(s.id, pattern)]
        if not hits:
            raise ValueError(f"no system matches {pattern!r}; known: {', '.join(_BY_ID)}")
        chosen += [s for s in hits if s not in chosen]
    return [s for s in SYSTEMS if s in chosen]
