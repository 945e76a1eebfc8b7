"""The worker runtime: consume queues, run jobs within a concurrency limit, shut down cleanly."""

from __future__ import annotations

import inspect
import logging
import os
from collections import deque
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.lowlevel

from chute._waker import Waker
from chute.app import App
from chute.broker import Ack, Broker, Delivery
from chute.errors import ConfigurationError
from chute.resources import Resources
from chute.worker._execute import Counts, Executor
from chute.worker._leases import Leases
from chute.worker._scheduler import Scheduler

log = logging.getLogger("chute.worker")

__all__ = ["Worker"]


class Worker:
    """Runs an app's jobs in this process.

    Args:
        app: the app whose tasks to run.
        queues: the queues to consume; default, every queue of the app's tasks.
        concurrency: jobs run at once (async tasks share the event loop; sync tasks each take
            a thread, at most this many).
        prefetch: unsettled messages taken per queue ahead of free slots; default twice the
            concurrency. Held messages keep their lease extended.
        lease: seconds a job stays leased before another worker may take it if this one
            vanishes; extended every third of it while the job is held.
        grace: seconds a graceful stop waits for running jobs before cancelling them.
        burst: stop by itself once every queue is empty and nothing runs.
        scheduler: run the scheduler for the app's ``cron`` and ``every`` tasks (any number of
            workers may; each slot is enqueued once).
    """

    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        prefetch: int | None = None,
        lease: float = 30.0,
        grace: float = 30.0,
        burst: bool = False,
        scheduler: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if not lease > 0:
            raise ConfigurationError("lease must be more than 0 seconds")
        self.app = app
        self.queues = list(dict.fromkeys(queues or app.queues()))
        self.concurrency = concurrency
        self.prefetch = prefetch or max(2, 2 * concurrency)
        self.lease = lease
        self.grace = grace
        self.burst = burst
        self.scheduler = scheduler and bool(app.schedules) and not burst
        self.counts = Counts()
        self._stop: anyio.Event | None = None
        self._stopping = False
        self._waiting: deque[tuple[str, Delivery]] = deque()
        self._idle_runners: deque[anyio.Event] = deque()
        self._running = 0
        self._idle = Waker()
        self._schedule: Scheduler | None = None

    def stop(self) -> None:
        """Begin a graceful stop: take no new jobs, let running ones finish within the grace."""
        self._stopping = True
        if self._stop is not None:
            self._stop.set()

    def _check(self, broker: Broker) -> None:
        caps = broker.capabilities
        if caps.max_lease is not None:
            self._check_leases(caps.max_lease)
        for queue in self.queues:
            mode = self.app.ack_mode(queue)
            if mode not in caps.acks:
                have = ", ".join(sorted(a.name for a in caps.acks))
                raise ConfigurationError(
                    f"queue {queue!r} needs ack={mode.name}, but the broker "
                    f"{self.app.describe_broker()} supports only {have}"
                )

    def _check_leases(self, max_lease: float) -> None:
        where = (
            f"the broker {self.app.describe_broker()} keeps a job leased at most {max_lease:g} s"
        )
        if self.lease > max_lease:
            raise ConfigurationError(f"--lease {self.lease:g} is too long: {where}")
        for task in self.app.tasks.values():
            if task.opts.queue not in self.queues:
                continue
            longest = max(task.opts.timeout or 0.0, task.opts.lease or 0.0)
            if longest > max_lease:
                raise ConfigurationError(
                    f"task {task.name!r} may run {longest:g} s, but {where} from its receipt; "
                    "lower its timeout, or split the work into shorter jobs"
                )

    async def run(self) -> Counts:
        """Run until :meth:`stop` (or, in burst mode, until the queues are drained)."""
        self._stop = anyio.Event()
        if self._stopping:
            self._stop.set()
        broker = await self.app.connect()
        self._check(broker)
        leases = Leases(self.lease)
        threads = anyio.CapacityLimiter(self.concurrency)
        resources = Resources()
        store = await self.app.connect_store() if self.app.store is not None else None
        executor = Executor(self.app, broker, resources, leases, threads, store)
        self._schedule = Scheduler(self.app, broker, store) if self.scheduler and store else None
        self.counts = executor.counts
        shortest = min(
            [t.opts.lease for t in self.app.tasks.values() if t.opts.lease] or [self.lease]
        )
        try:
            async with AsyncExitStack() as stack:
                await resources.open(
                    stack, [m for t in self.app.tasks.values() for m in t.codec.injected.values()]
                )
                for hook in self.app.startup_hooks:
                    await _call_hook(hook)
                stack.push_async_callback(self._shutdown_hooks)
                log.info(
                    "chute worker started: pid=%d queues=%s concurrency=%d broker=%s",
                    os.getpid(),
                    ",".join(self.queues),
                    self.concurrency,
                    self.app.describe_broker(),
                )
                await self._serve(broker, executor, leases, shortest)
        finally:
            await self.app.close()
        c = self.counts
        log.info(
            "chute worker stopped: %d succeeded, %d retried, %d dead-lettered, %d released",
            c.succeeded,
            c.retried,
            c.dead,
            c.released,
        )
        return self.counts

    async def _shutdown_hooks(self) -> None:
        for hook in reversed(self.app.shutdown_hooks):
            try:
                await _call_hook(hook)
            except Exception:
                log.exception("shutdown hook %r failed", hook)

    async def _serve(
        self, broker: Broker, executor: Executor, leases: Leases, shortest: float
    ) -> None:
        assert self._stop is not None
        async with AsyncExitStack() as consumers:
            streams = [
                (
                    queue,
                    await consumers.enter_async_context(
                        broker.consume(
                            queue,
                            ack=self.app.ack_mode(queue),
                            prefetch=self.prefetch,
                            lease=self.lease,
                        )
                    ),
                )
                for queue in self.queues
            ]
            async with anyio.create_task_group() as runners:
                # A fixed pool of runners, one per unit of concurrency: cheaper than a task per job.
                for _ in range(self.concurrency):
                    runners.start_soon(self._runner, executor)
                heartbeat = anyio.CancelScope()
                async with anyio.create_task_group() as intake:
                    for queue, stream in streams:
                        intake.start_soon(self._pull, queue, stream, leases)
                    intake.start_soon(leases.run, shortest)
                    if self.burst:
                        intake.start_soon(self._watch_drained, broker)
                    if self._schedule is not None:
                        intake.start_soon(self._schedule.run)
                    await self._stop.wait()
                    # Stop taking jobs, but keep the heartbeat beating for the jobs still held.
                    intake.cancel_scope.cancel()
                    runners.start_soon(self._beat, leases, shortest, heartbeat)
                self._stopping = True
                for idle in self._idle_runners:
                    idle.set()
                await self._release_waiting(executor)
                with anyio.move_on_after(self.grace):
                    while self._running:
                        await self._idle.wait()
                if self._running:
                    log.warning(
                        "%d job(s) still running after the %.0f s grace period; cancelling and "
                        "releasing them",
                        self._running,
                        self.grace,
                    )
                runners.cancel_scope.cancel()
                heartbeat.cancel()

    async def _beat(self, leases: Leases, shortest: float, scope: anyio.CancelScope) -> None:
        with scope:
            await leases.run(shortest)

    async def _pull(self, queue: str, stream: Any, leases: Leases) -> None:
        track = self.app.ack_mode(queue) is Ack.ON_COMPLETION
        async for delivery in stream:
            if track:
                leases.track(delivery)
            self._waiting.append((queue, delivery))
            if self._idle_runners:
                self._idle_runners.popleft().set()

    async def _runner(self, executor: Executor) -> None:
        waiting = self._waiting
        while not self._stopping:
            if not waiting:
                idle = anyio.Event()
                self._idle_runners.append(idle)
                await idle.wait()
                continue
            queue, delivery = waiting.popleft()
            self._running += 1
            try:
                await executor.run(queue, delivery)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:
                # Settling failed (the broker is unreachable, say). The lease will lapse and
                # the job come back; the worker carries on.
                log.exception("could not settle message %s from queue %s", delivery.id, queue)
            finally:
                self._running -= 1
                self._idle.notify()
            # A job that never awaited must not starve the rest of the worker.
            await anyio.lowlevel.checkpoint()

    async def _release_waiting(self, executor: Executor) -> None:
        with anyio.CancelScope(shield=True):
            while self._waiting:
                _, delivery = self._waiting.popleft()
                executor.leases.untrack(delivery)
                try:
                    await delivery.release()
                    executor.counts.released += 1
                except Exception as exc:
                    log.warning("could not release message %s: %s", delivery.id, exc)

    async def _watch_drained(self, broker: Broker) -> None:
        """In burst mode, stop once nothing is left to do."""
        quiet = 0
        while True:
            await anyio.sleep(0.05)
            if self._running or self._waiting:
                quiet = 0
                continue
            pending = 0
            for queue in self.queues:
                stats = await broker.stats(queue)
                pending += stats.ready + stats.delayed
            # Twice in a row, so a job published by a job that just finished is not missed.
            quiet = quiet + 1 if pending == 0 else 0
            if quiet >= 2:
                self.stop()
                return


async def _call_hook(hook: Any) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result
