"""The application: a broker, a registry of tasks, and the ways to enqueue."""

from __future__ import annotations

import atexit
import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, overload

import anyio
import anyio.from_thread
import msgspec

from chute.backoff import Backoff
from chute.broker import Ack, Broker, Outgoing
from chute.errors import ConfigurationError, EnqueueError, MessageTooLarge, UnknownTaskError
from chute.job import Job
from chute.message import EMPTY, Envelope, encode_envelope
from chute.plugins import DEFAULT_BROKER_URL, broker_from_url, redact_url
from chute.task import AsyncTask, Call, EnqueueOptions, SyncTask, Task, TaskOptions, TaskRef

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")
Hook = Callable[[], Awaitable[None] | None]


def _raw(data: bytes | None) -> msgspec.Raw:
    return EMPTY if data is None else msgspec.Raw(data)


class _TaskDecorator(Protocol):
    @overload
    def __call__(  # pyright: ignore[reportOverlappingOverload]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...


class App:
    """A chute application: where tasks are registered and jobs enqueued.

    Args:
        broker: a broker URL (``redis://localhost:6379``), a broker instance, or ``None`` for
            ``$CHUTE_BROKER_URL`` and, failing that, the embedded SQLite broker on
            ``./chute.sqlite3``.
        default_queue: the queue of tasks that do not name one.

    The broker connects on first use. ``async with app:`` (or :meth:`close`) disconnects.
    """

    def __init__(self, broker: str | Broker | None = None, *, default_queue: str = "default"):
        if broker is None or isinstance(broker, str):
            self.broker_url: str | None = (
                broker or os.environ.get("CHUTE_BROKER_URL") or DEFAULT_BROKER_URL
            )
            self._broker: Broker = broker_from_url(self.broker_url)
        else:
            self.broker_url = getattr(broker, "url", None)
            self._broker = broker
        self.default_queue = default_queue
        self.tasks: dict[str, Task[..., Any]] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self._connected = False
        self._connect_lock: anyio.Lock | None = None
        self._portal_lock = threading.Lock()
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._sync_broker: Broker | None = None

    def __repr__(self) -> str:
        return f"<App broker={self.describe_broker()!r} tasks={sorted(self.tasks)!r}>"

    @property
    def broker(self) -> Broker:
        """The broker instance (connected on first use)."""
        return self._broker

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
            )
            return self._register(fn, options)

        if fn is not None:
            return register(fn)
        return register

    def _register(self, fn: Callable[..., Any], options: TaskOptions) -> Task[..., Any]:
        if options.name in self.tasks:
            raise ConfigurationError(f"a task named {options.name!r} is already registered")
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

    def _outgoing(self, calls: Iterable[Call[Any]], broker: Broker) -> dict[str, list[Outgoing]]:
        caps = broker.capabilities
        now = time.time()
        batches: dict[str, list[Outgoing]] = {}
        for call in calls:
            delay = call.options.delay
            not_before = None
            if delay > 0 and caps.max_delay == 0:
                raise EnqueueError(
                    f"task {call.task!r}: {self.describe_broker()} cannot hold delayed messages "
                    "(its max_delay is 0); use a broker with delays for delay= and at="
                )
            if delay > 0 and caps.max_delay is not None and delay > caps.max_delay:
                not_before = now + delay
                delay = caps.max_delay
            envelope = Envelope(
                id=call.id,
                task=call.task,
                queue=call.queue,
                params=_raw(call.params),
                args=_raw(call.args),
                kwargs=_raw(call.kwargs),
                enqueued_at=now,
                not_before=not_before,
                key=call.options.key,
                headers=dict(call.options.headers) if call.options.headers else {},
            )
            body = encode_envelope(envelope)
            if caps.max_body is not None and len(body) > caps.max_body:
                raise MessageTooLarge(
                    f"task {call.task!r}: the job is {len(body)} bytes encoded, but "
                    f"{self.describe_broker()} accepts at most {caps.max_body} bytes per "
                    "message; pass a reference (a URL, a database key) instead of the data"
                )
            batches.setdefault(call.queue, []).append(Outgoing(body, delay, call.options.key))
        return batches

    def _jobs(self, calls: list[Call[Any]]) -> list[Job[Any]]:
        return [Job(self, c.id, c.task, c.queue) for c in calls]

    async def enqueue_many(self, calls: Iterable[Call[R]]) -> list[Job[R]]:
        """Send prepared jobs (see :meth:`Task.call`), batched per queue.

        Raises:
            MessageTooLarge: a job exceeds the broker's size limit; nothing was sent.
            BrokerError: the broker failed; some jobs of the batch may have been stored.
        """
        calls = list(calls)
        broker = await self.connect()
        for queue, batch in self._outgoing(calls, broker).items():
            await broker.publish(queue, batch)
        return self._jobs(calls)

    # -- the sync API -------------------------------------------------------------------

    def _sync_portal(self) -> anyio.from_thread.BlockingPortal:
        with self._portal_lock:
            if self._portal is None:
                cm = anyio.from_thread.start_blocking_portal()
                self._portal = cm.__enter__()
                self._portal_cm = cm
                atexit.register(self.close_sync)
            return self._portal

    def enqueue_many_sync(self, calls: Iterable[Call[R]]) -> list[Job[R]]:
        """:meth:`enqueue_many` for code that is not async.

        Runs on a private event loop in a background thread, with its own broker connection
        when the app was configured by URL.
        """
        calls = list(calls)
        portal = self._sync_portal()

        async def send() -> None:
            if self._sync_broker is None:
                broker = broker_from_url(self.broker_url) if self.broker_url else self._broker
                await broker.__aenter__()
                self._sync_broker = broker
            for queue, batch in self._outgoing(calls, self._sync_broker).items():
                await self._sync_broker.publish(queue, batch)

        portal.call(send)
        return self._jobs(calls)

    def close_sync(self) -> None:
        """Flush and close the sync API's connection and thread, if they were started."""
        with self._portal_lock:
            portal, cm = self._portal, self._portal_cm
            self._portal = self._portal_cm = None
        if portal is None or cm is None:
            return
        broker, self._sync_broker = self._sync_broker, None
        if broker is not None:
            portal.call(broker.__aexit__, None, None, None)
        cm.__exit__(None, None, None)
        atexit.unregister(self.close_sync)
