"""The application: a broker, a registry of tasks, and the ways to enqueue."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, cast, overload

import anyio

from chute import _publish
from chute._sync import SyncBridge
from chute.backoff import Backoff
from chute.broker import Ack, Broker
from chute.errors import ConfigurationError, UnknownTaskError
from chute.job import Job
from chute.plugins import (
    DEFAULT_BROKER_URL,
    broker_from_url,
    redact_url,
    store_from_url,
    store_plugin_for,
)
from chute.schedules import Cron, Every, Schedule
from chute.store import Store
from chute.task import AsyncTask, Call, EnqueueOptions, SyncTask, Task, TaskOptions, TaskRef

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")
Hook = Callable[[], Awaitable[None] | None]


class _TaskDecorator(Protocol):
    @overload
    def __call__(  # pyright: ignore[reportOverlappingOverload]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A task the workers' scheduler enqueues on a schedule."""

    task: Task[..., Any]
    schedule: Schedule
    catch_up: bool


class App:
    """A chute application: where tasks are registered and jobs enqueued.

    Args:
        broker: a broker URL (``redis://localhost:6379``), a broker instance, or ``None`` for
            ``$CHUTE_BROKER_URL`` and, failing that, the embedded SQLite broker on
            ``./chute.sqlite3``.
        store: where results, unique-job keys and cron slots live: a store URL, a store
            instance, or ``None`` for the broker's own store when its package provides one
            (SQLite, memory, Redis, NATS). Features that need a store fail at configuration
            time when there is none.
        default_queue: the queue of tasks that do not name one.
        unique_lock_ttl: the longest a unique-job key stays taken by a job that never
            finishes (lost by an at-most-once queue, say), in seconds.

    The broker connects on first use. ``async with app:`` (or :meth:`close`) disconnects.
    """

    def __init__(
        self,
        broker: str | Broker | None = None,
        *,
        store: str | Store | None = None,
        default_queue: str = "default",
        unique_lock_ttl: float = 86_400.0,
    ) -> None:
        if broker is None or isinstance(broker, str):
            self.broker_url: str | None = (
                broker or os.environ.get("CHUTE_BROKER_URL") or DEFAULT_BROKER_URL
            )
            self._broker: Broker = broker_from_url(self.broker_url)
        else:
            self.broker_url = getattr(broker, "url", None)
            self._broker = broker
        self.store_url: str | None = store if isinstance(store, str) else None
        self._store: Store | None = self._resolve_store(store)
        self._store_connected = False
        self.default_queue = default_queue
        self.unique_lock_ttl = unique_lock_ttl
        self.tasks: dict[str, Task[..., Any]] = {}
        self.schedules: list[Scheduled] = []
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self._connected = False
        self._connect_lock: anyio.Lock | None = None
        self._sync = SyncBridge(self)

    def __repr__(self) -> str:
        return f"<App broker={self.describe_broker()!r} tasks={sorted(self.tasks)!r}>"

    @property
    def broker(self) -> Broker:
        """The broker instance (connected on first use)."""
        return self._broker

    def _resolve_store(self, store: str | Store | None) -> Store | None:
        if isinstance(store, str):
            return store_from_url(store)
        if store is not None:
            return store
        default = getattr(self._broker, "default_store", None)
        if callable(default):
            return cast(Store, default())
        if self.broker_url and store_plugin_for(self.broker_url):
            self.store_url = self.broker_url
            return store_from_url(self.broker_url)
        return None

    @property
    def store(self) -> Store | None:
        """The store, or ``None`` when this app has none."""
        return self._store

    def require_store(self, feature: str) -> Store:
        """The store, for ``feature``.

        Raises:
            ConfigurationError: there is none; the message says how to configure one.
        """
        if self._store is None:
            raise ConfigurationError(
                f"{feature} needs a store, and the broker {self.describe_broker()} provides "
                "none; pass one, e.g. App(broker=..., store='redis://localhost:6379')"
            )
        return self._store

    async def connect_store(self) -> Store:
        """Connect the store if needed and return it.

        Raises:
            ConfigurationError: the app has no store.
        """
        store = self.require_store("this")
        if not self._store_connected:
            if self._connect_lock is None:
                self._connect_lock = anyio.Lock()
            async with self._connect_lock:
                if not self._store_connected:
                    await store.__aenter__()
                    self._store_connected = True
        return store

    def job(self, job_id: str) -> Job[Any]:
        """A handle on the job ``job_id``, from any process, for ``status()`` and ``result()``."""
        return Job(self, job_id, "", "")

    def describe_broker(self) -> str:
        """The broker URL without its password, for logs."""
        if self.broker_url:
            return redact_url(self.broker_url)
        return repr(self._broker)

    # -- registration -------------------------------------------------------------------

    @overload
    def task(  # pyright: ignore[reportOverlappingOverload]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...
    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        ack: Ack = Ack.ON_COMPLETION,
        lease: float | None = None,
        keep_result: float | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        ack: Ack = Ack.ON_COMPLETION,
        lease: float | None = None,
        keep_result: float | None = None,
    ) -> Any:
        """Register a function (``async def`` or plain ``def``) as a task.

        Use bare (``@app.task``) or with options (``@app.task(queue="mail", max_attempts=5)``);
        see :class:`chute.TaskOptions` for what each option means.

        Raises:
            ConfigurationError: a duplicate name, a queue whose tasks disagree on the ack
                mode, or type hints msgspec cannot encode.
        """

        def register(fn: Callable[..., Any]) -> Task[..., Any]:
            options = TaskOptions(
                name=name or f"{fn.__module__}.{fn.__qualname__}",
                queue=queue or self.default_queue,
                max_attempts=max_attempts,
                backoff=backoff or Backoff(),
                timeout=timeout,
                ack=ack,
                lease=lease,
                keep_result=keep_result,
            )
            return self._register(fn, options)

        if fn is not None:
            return register(fn)
        return register

    def _register(self, fn: Callable[..., Any], options: TaskOptions) -> Task[..., Any]:
        if options.name in self.tasks:
            raise ConfigurationError(f"a task named {options.name!r} is already registered")
        if options.keep_result is not None:
            self.require_store(f"task {options.name!r} with keep_result")
        for other in self.tasks.values():
            if other.opts.queue == options.queue and other.opts.ack is not options.ack:
                raise ConfigurationError(
                    f"task {options.name!r} wants ack={options.ack.name} on queue "
                    f"{options.queue!r}, but task {other.name!r} on that queue uses "
                    f"ack={other.opts.ack.name}; a queue has one ack mode, so give one of "
                    "them another queue"
                )
        is_async = inspect.iscoroutinefunction(fn)
        task: Task[..., Any] = (AsyncTask if is_async else SyncTask)(self, fn, options)
        self.tasks[options.name] = task
        return task

    def cron(
        self,
        expression: str,
        *,
        tz: str | tzinfo = "UTC",
        catch_up: bool = False,
        name: str | None = None,
        queue: str | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        keep_result: float | None = None,
    ) -> _TaskDecorator:
        """Register a task (taking no arguments) that workers enqueue on a cron schedule.

        Args:
            expression: five fields, ``minute hour day-of-month month day-of-week``, or a macro
                such as ``@daily``; see :class:`chute.schedules.Cron`.
            tz: the time zone the expression's wall-clock times are in.
            catch_up: when no worker ran at a slot's time, enqueue the most recent missed slot
                once at the next worker start; otherwise (the default) slots missed by more
                than 30 s are skipped.

        Every worker runs the scheduler (``chute worker --no-scheduler`` opts out); each slot
        is enqueued once however many run, through claims in the store.

        Raises:
            ConfigurationError: a bad expression or zone, no store, or a task with parameters.
        """
        return self._scheduled(
            Cron(expression, tz), catch_up, name=name, queue=queue, max_attempts=max_attempts,
            timeout=timeout, keep_result=keep_result,
        )  # fmt: skip

    def every(
        self,
        interval: float | timedelta | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        catch_up: bool = False,
        name: str | None = None,
        queue: str | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        keep_result: float | None = None,
    ) -> _TaskDecorator:
        """Register a task (taking no arguments) that workers enqueue at a fixed interval.

        Slots are aligned to the Unix epoch: ``every(minutes=5)`` fires at :00, :05, :10...
        UTC, whichever worker is up. See :meth:`cron` for ``catch_up`` and delivery.
        """
        if isinstance(interval, timedelta):
            interval = interval.total_seconds()
        total = (interval or 0) + seconds + 60 * minutes + 3600 * hours
        return self._scheduled(
            Every(total), catch_up, name=name, queue=queue, max_attempts=max_attempts,
            timeout=timeout, keep_result=keep_result,
        )  # fmt: skip

    def _scheduled(self, schedule: Schedule, catch_up: bool, **options: Any) -> _TaskDecorator:
        self.require_store(f"scheduled tasks ({schedule.describe()})")
        schedule.next_after(time.time())  # a schedule that never fires fails here

        def register(fn: Callable[..., Any]) -> Task[..., Any]:
            task: Task[..., Any] = self.task(**options)(fn)
            try:
                task.codec.signature.bind()
            except TypeError:
                del self.tasks[task.name]
                raise ConfigurationError(
                    f"scheduled task {task.name!r} must be callable without arguments"
                ) from None
            self.schedules.append(Scheduled(task, schedule, catch_up))
            return task

        return cast(_TaskDecorator, register)

    def on_startup(self, fn: Hook) -> Hook:
        """Register a hook the worker runs before taking jobs (sync or async, no arguments)."""
        self.startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """Register a hook the worker runs after its last job (sync or async, no arguments)."""
        self.shutdown_hooks.append(fn)
        return fn

    def queues(self) -> list[str]:
        """The queues of the registered tasks, sorted."""
        return sorted({t.opts.queue for t in self.tasks.values()} or {self.default_queue})

    def ack_mode(self, queue: str) -> Ack:
        """The ack mode of ``queue``: its tasks', or ``ON_COMPLETION`` when it has none."""
        for t in self.tasks.values():
            if t.opts.queue == queue:
                return t.opts.ack
        return Ack.ON_COMPLETION

    # -- enqueueing ---------------------------------------------------------------------

    def task_ref(self, name: str, *, queue: str | None = None) -> TaskRef:
        """A handle to enqueue the task ``name`` without importing its code.

        If this app has the task registered, its signature checks the arguments as usual.
        """
        task = self.tasks.get(name)
        if task is not None:
            codec = task.codec
            queue = queue or task.opts.queue
        else:
            codec = None
            queue = queue or self.default_queue
        return TaskRef(self, name, queue, codec, EnqueueOptions())

    async def enqueue(self, name: str, /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue the task ``name`` with these arguments; see :meth:`task_ref` for options."""
        return await self.task_ref(name).enqueue(*args, **kwargs)

    def enqueue_sync(self, name: str, /, *args: Any, **kwargs: Any) -> Job[Any]:
        """:meth:`enqueue` for code that is not async."""
        return self.task_ref(name).enqueue_sync(*args, **kwargs)

    def get_task(self, name: str) -> Task[..., Any]:
        """The registered task ``name``.

        Raises:
            UnknownTaskError: no task has that name; the message lists the ones that exist.
        """
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(f"no task named {name!r} (registered: {known})") from None

    async def connect(self) -> Broker:
        """Connect the broker if it is not connected yet; return it."""
        if self._connected:
            return self._broker
        if self._connect_lock is None:
            self._connect_lock = anyio.Lock()
        async with self._connect_lock:
            if not self._connected:
                await self._broker.__aenter__()
                self._connected = True
        return self._broker

    async def close(self) -> None:
        """Flush and disconnect the broker (and the sync API's, if it was used)."""
        if self._connected:
            self._connected = False
            await self._broker.__aexit__(None, None, None)
        if self._store_connected and self._store is not None:
            self._store_connected = False
            await self._store.__aexit__(None, None, None)
        self.close_sync()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _jobs(self, calls: list[Call[Any]], ids: list[str]) -> list[Job[Any]]:
        jobs: list[Job[Any]] = []
        for call, job_id in zip(calls, ids, strict=True):
            task = self.tasks.get(call.task)
            returns = task.codec.return_type if task is not None else Any
            jobs.append(Job(self, job_id, call.task, call.queue, returns))
        return jobs

    async def enqueue_many(self, calls: Iterable[Call[R]]) -> list[Job[R]]:
        """Send prepared jobs (see :meth:`Task.call`), batched per queue.

        A call whose unique key is taken resolves to the job holding it, and is not sent.

        Raises:
            MessageTooLarge: a job exceeds the broker's size limit; nothing was sent.
            BrokerError: the broker failed; some jobs of the batch may have been stored.
        """
        calls = list(calls)
        broker = await self.connect()
        ids = await _publish.send(self, broker, self.connect_store, calls)
        return self._jobs(calls, ids)

    # -- the sync API -------------------------------------------------------------------

    def enqueue_many_sync(self, calls: Iterable[Call[R]]) -> list[Job[R]]:
        """:meth:`enqueue_many` for code that is not async.

        Runs on a private event loop in a background thread, with its own broker connection
        when the app was configured by URL. Must not be called from inside an event loop.
        """
        calls = list(calls)
        return self._jobs(calls, self._sync.send(calls))

    def close_sync(self) -> None:
        """Flush and close the sync API's connections and thread, if they were started."""
        self._sync.close()
