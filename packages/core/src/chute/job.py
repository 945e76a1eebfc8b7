"""Handles on enqueued jobs, and the running job's own view of itself."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chute.errors import ConfigurationError
from chute.results import JobStatus, read_result, read_status

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

    __slots__ = ("_app", "_return_type", "id", "queue", "task")

    def __init__(self, app: App, id: str, task: str, queue: str, return_type: Any = Any) -> None:
        self._app = app
        self._return_type = return_type
        self.id = id
        self.task = task
        self.queue = queue

    async def status(self) -> JobStatus:
        """Where the job is: queued, running, succeeded, failed (retrying), dead, or unknown.

        Known only for tasks with ``keep_result``; other jobs read as ``UNKNOWN``.

        Raises:
            ConfigurationError: the app has no store.
        """
        return await read_status(await self._app.connect_store(), self.id)

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return what the task returned.

        The value is decoded as the task's return annotation. Needs ``keep_result`` on the task.

        Raises:
            TimeoutError: it did not finish within ``timeout`` seconds.
            JobFailed: it failed for good; carries the remote type, message and traceback.
            ConfigurationError: the app has no store.
        """
        task = self._app.tasks.get(self.task)
        if task is not None and task.opts.keep_result is None:
            raise ConfigurationError(
                f"task {self.task!r} keeps no results; register it with keep_result=SECONDS"
            )
        store = await self._app.connect_store()
        value: R = await read_result(store, self.id, self._return_type, timeout)
        return value

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
