"""Handles on enqueued jobs, and the running job's own view of itself."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from chute.app import App

__all__ = ["Job", "JobInfo", "current_job"]

R = TypeVar("R")


class Job(Generic[R]):
    """A job that was enqueued. ``R`` is the task's return type.

    Attributes:
        id: the job id, unique per enqueue; it appears in every log line about the job.
        task: the task name.
        queue: the queue it went to.
    """

    __slots__ = ("_app", "id", "queue", "task")

    def __init__(self, app: App, id: str, task: str, queue: str) -> None:
        self._app = app
        self.id = id
        self.task = task
        self.queue = queue

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, task={self.task!r}, queue={self.queue!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What a running task may know about its own job; see :func:`current_job`.

    Attributes:
        id: the job id.
        task: the task name.
        queue: the queue it came from.
        attempt: 1 on the first run, raised on every retry or redelivery.
        max_attempts: the task's attempt limit.
        enqueued_at: Unix time of the enqueue.
        headers: the envelope's headers.
    """

    id: str
    task: str
    queue: str
    attempt: int
    max_attempts: int
    enqueued_at: float
    headers: Mapping[str, str] = field(default_factory=dict[str, str])


# What the worker sets per job; a JobInfo is only built when a task asks for it.
_Raw = tuple[str, str, str, int, int, float, Mapping[str, str]]
_current: contextvars.ContextVar[_Raw] = contextvars.ContextVar("chute_current_job")


def current_job() -> JobInfo:
    """The job the calling code runs in, inside a worker (async and sync tasks alike).

    Raises:
        LookupError: called outside a task run by a worker.
    """
    try:
        raw = _current.get()
    except LookupError:
        raise LookupError("current_job() is only available inside a task run by a worker") from None
    return JobInfo(*raw)


def set_current_job(
    id: str,
    task: str,
    queue: str,
    attempt: int,
    max_attempts: int,
    enqueued_at: float,
    headers: Mapping[str, str],
) -> contextvars.Token[_Raw]:
    """Called by the worker around each job."""
    return _current.set((id, task, queue, attempt, max_attempts, enqueued_at, headers))


def reset_current_job(token: contextvars.Token[_Raw]) -> None:
    """Called by the worker after each job."""
    _current.reset(token)
