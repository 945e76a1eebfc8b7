"""Tasks: registered functions, their options, and typed enqueueing."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import msgspec

from chute._arguments import ArgumentCodec
from chute.backoff import Backoff
from chute.broker import Ack
from chute.errors import ConfigurationError
from chute.job import Job
from chute.message import new_job_id

if TYPE_CHECKING:
    from chute.app import App

__all__ = ["AsyncTask", "Call", "EnqueueOptions", "SyncTask", "Task", "TaskOptions", "TaskRef"]

P = ParamSpec("P")
R = TypeVar("R")

_encoder = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task runs. Set through ``@app.task(...)``.

    Attributes:
        name: the name producers enqueue by; defaults to ``module.function``.
        queue: the queue its jobs go to.
        max_attempts: runs before a failing job goes to the dead-letter queue. Attempts lost
            to a crashed worker count too.
        backoff: the wait between a failure and the next attempt.
        timeout: seconds a run may take before it counts as a failed attempt; ``None`` for no
            limit. An async task is cancelled; a sync task's thread is abandoned (Python cannot
            stop a thread), its eventual result ignored.
        ack: ``Ack.ON_COMPLETION`` (at-least-once, the default) or ``Ack.ON_RECEIPT``
            (at-most-once). All tasks on one queue share a mode.
        lease: the lease each run holds, in seconds; ``None`` for the worker's ``--lease``.
            The worker extends it while the task runs, so it only bounds how soon a crashed
            worker's job comes back.
        keep_result: seconds to keep each job's state and return value in the app's store,
            for ``job.status()`` and ``job.result()``; ``None`` (the default) keeps nothing and
            costs no store writes.
    """

    name: str
    queue: str = "default"
    max_attempts: int = 3
    backoff: Backoff = Backoff()  # noqa: RUF009 - frozen, so sharing one is safe
    timeout: float | None = None
    ack: Ack = Ack.ON_COMPLETION
    lease: float | None = None
    keep_result: float | None = None

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if self.max_attempts < 1:
            raise ConfigurationError(f"{where}: max_attempts must be >= 1")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigurationError(f"{where}: timeout must be > 0 seconds or None")
        if self.lease is not None and not self.lease > 0:
            raise ConfigurationError(f"{where}: lease must be > 0 seconds or None")
        if self.keep_result is not None and not self.keep_result > 0:
            raise ConfigurationError(f"{where}: keep_result must be > 0 seconds or None")
        if not self.queue or self.queue.endswith(".dead"):
            raise ConfigurationError(f"{where}: queue {self.queue!r} is not a usable name")


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-enqueue choices; see :meth:`Task.options`.

    Attributes:
        delay: seconds before the job may start.
        at: the moment before which the job may not start (timezone-aware).
        key: the unique-job key: while a job with this key is queued or running, enqueueing
            the same key returns that job instead of a new one. Brokers that deduplicate
            natively receive it too.
        key_ttl: seconds the key stays taken after the job finishes; ``None`` frees it at once.
        queue: a queue other than the task's own.
        headers: text metadata carried in the envelope.
    """

    delay: float = 0.0
    key: str | None = None
    key_ttl: float | None = None
    queue: str | None = None
    headers: Mapping[str, str] | None = None


def _delay_seconds(delay: float | timedelta | None, at: datetime | None) -> float:
    if delay is not None and at is not None:
        raise ConfigurationError("give delay= or at=, not both")
    if at is not None:
        if at.tzinfo is None:
            raise ConfigurationError(
                f"at={at!r} has no time zone; pass an aware datetime such as "
                "datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        return max(0.0, at.timestamp() - datetime.now(tz=at.tzinfo).timestamp())
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is None:
        return 0.0
    if not (delay >= 0 and math.isfinite(delay)):
        raise ConfigurationError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
    return float(delay)


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One prepared job: task, validated arguments and options, not yet sent.

    Made by :meth:`Task.call`; sent by :meth:`Task.enqueue_many` or :meth:`App.enqueue_many`.
    """

    task: str
    queue: str
    id: str
    params: bytes | None
    args: bytes | None
    kwargs: bytes | None
    options: EnqueueOptions

    def with_id(self, job_id: str) -> Call[R]:
        """The same call under another job id (the scheduler names its jobs before sending)."""
        return replace(self, id=job_id)


class _Enqueuer(Generic[P, R]):
    """What every enqueueing handle shares: typed calls, options, sync variants."""

    _app: App
    _name: str
    _queue: str
    _codec: ArgumentCodec | None
    _options: EnqueueOptions

    def call(self, *args: P.args, **kwargs: P.kwargs) -> Call[R]:
        """Prepare a job with these arguments, checked against the task's signature now.

        Raises:
            ArgumentError: an argument does not fit the signature or its type hint.
        """
        options = self._options
        if self._codec is not None:
            params = self._codec.encode(args, kwargs)
            loose_args = loose_kwargs = None
        else:
            params = None
            loose_args = _encoder.encode(list(args)) if args else None
            loose_kwargs = _encoder.encode(kwargs) if kwargs else None
        return Call(
            task=self._name,
            queue=options.queue or self._queue,
            id=new_job_id(),
            params=params,
            args=loose_args,
            kwargs=loose_kwargs,
            options=options,
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job; returns its handle once the broker has stored it.

        Raises:
            ArgumentError: an argument does not fit the signature or its type hint.
            BrokerError: the broker did not store the job.
        """
        (job,) = await self._app.enqueue_many([self.call(*args, **kwargs)])
        return job

    async def enqueue_many(self, calls: Iterable[Call[R]]) -> list[Job[R]]:
        """Enqueue prepared jobs in as few broker round trips as the broker allows."""
        return await self._app.enqueue_many(calls)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """:meth:`enqueue` for code that is not async (scripts, WSGI views).

        Must not be called from inside an event loop's thread.
        """
        return self._app.enqueue_many_sync([self.call(*args, **kwargs)])[0]

    def options(
        self,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        key_ttl: float | None = None,
        queue: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Bound[P, R]:
        """The same task with per-enqueue options: ``await t.options(delay=60).enqueue(x)``.

        Args:
            delay: seconds (or a ``timedelta``) before the job may start.
            at: an aware ``datetime`` before which the job may not start.
            key: a unique-job key: while a job with this key is queued or running, enqueueing
                the same key again returns the existing job. Needs a store.
            key_ttl: seconds the key stays taken after the job finishes (default: freed).
            queue: send to this queue instead of the task's own.
            headers: text metadata carried with the job.
        """
        current = self._options
        if key is not None:
            self._app.require_store(f"unique jobs (key={key!r})")
        if key_ttl is not None and not key_ttl > 0:
            raise ConfigurationError(f"key_ttl must be > 0 seconds, got {key_ttl!r}")
        new = replace(
            current,
            delay=_delay_seconds(delay, at)
            if (delay is not None or at is not None)
            else current.delay,
            key=key if key is not None else current.key,
            key_ttl=key_ttl if key_ttl is not None else current.key_ttl,
            queue=queue if queue is not None else current.queue,
            headers={**(current.headers or {}), **headers} if headers else current.headers,
        )
        return Bound(self._app, self._name, self._queue, self._codec, new)


class Bound(_Enqueuer[P, R]):
    """A task with per-enqueue options applied; made by :meth:`Task.options`."""

    __slots__ = ("_app", "_codec", "_name", "_options", "_queue")

    def __init__(
        self,
        app: App,
        name: str,
        queue: str,
        codec: ArgumentCodec | None,
        options: EnqueueOptions,
    ) -> None:
        self._app = app
        self._name = name
        self._queue = queue
        self._codec = codec
        self._options = options


class TaskRef(Bound[..., Any]):
    """A task known only by name, for producers that do not import the worker's code.

    Arguments are sent as given and checked by the worker (a mismatch there sends the job to
    the dead-letter queue). Made by :meth:`App.task_ref`.
    """


class Task(_Enqueuer[P, R]):
    """A registered task. ``P`` is its parameters, ``R`` what it returns.

    Enqueue with :meth:`enqueue`; calling the task object runs the function inline.
    """

    def __init__(self, app: App, fn: Callable[P, Any], options: TaskOptions) -> None:
        self._app = app
        self.fn = fn
        self.opts = options
        self._name = options.name
        self._queue = options.queue
        self._options = EnqueueOptions()
        self._codec = ArgumentCodec(options.name, fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def name(self) -> str:
        """The registered name."""
        return self.opts.name

    @property
    def codec(self) -> ArgumentCodec:
        """Encodes and decodes this task's arguments."""
        assert self._codec is not None
        return self._codec

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.opts.queue!r}>"


class AsyncTask(Task[P, R]):
    """A task whose function is ``async def``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Run the function inline, as if it were not a task."""
        result: Coroutine[Any, Any, R] = self.fn(*args, **kwargs)
        return result


class SyncTask(Task[P, R]):
    """A task whose function is a plain ``def``; the worker runs it in a thread."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function inline, as if it were not a task."""
        result: R = self.fn(*args, **kwargs)
        return result
