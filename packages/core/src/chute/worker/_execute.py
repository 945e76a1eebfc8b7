"""Running one delivery, from its bytes to its settlement (ack, retry, release or dead letter).

Bad input never escapes from here: an undecodable body, an unknown task or arguments that do
not fit go to the dead-letter queue with the reason, and the worker carries on.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from chute import dead
from chute.app import App
from chute.broker import Broker, Delivery, Outgoing, dead_queue
from chute.errors import ArgumentError, DecodeError
from chute.job import reset_current_job, set_current_job
from chute.message import Envelope, decode_envelope, encode_envelope
from chute.resources import Resources
from chute.signals import Retry
from chute.store import Store
from chute.task import AsyncTask, Task
from chute.worker._bookkeeping import SLOT_HEADER, Bookkeeping
from chute.worker._leases import Leases

log = logging.getLogger("chute.worker")


@dataclass(slots=True)
class Counts:
    """What a worker did, for its last log line and ``--burst`` reports."""

    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0


class _TimedOut(Exception):
    pass


class Executor:
    """Runs deliveries for one worker process."""

    def __init__(
        self,
        app: App,
        broker: Broker,
        resources: Resources,
        leases: Leases,
        threads: anyio.CapacityLimiter,
        store: Store | None = None,
    ) -> None:
        self.app = app
        self.broker = broker
        self.resources = resources
        self.leases = leases
        self.threads = threads
        self.books = Bookkeeping(store)
        self.counts = Counts()

    async def run(self, queue: str, delivery: Delivery) -> None:
        """Run ``delivery`` to settlement. Cancellation releases it, unstarted-as-it-were."""
        try:
            await self._run(queue, delivery)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await delivery.release()
                self.counts.released += 1
            raise
        finally:
            self.leases.untrack(delivery)

    async def _run(self, queue: str, delivery: Delivery) -> None:
        try:
            envelope = decode_envelope(delivery.body)
        except DecodeError as exc:
            await self._dead(queue, delivery, None, dead.UNDECODABLE, error=str(exc))
            return
        task = self.app.tasks.get(envelope.task)
        if task is None:
            known = ", ".join(sorted(self.app.tasks)) or "none"
            error = f"no task named {envelope.task!r} in this worker (registered: {known})"
            await self._dead(queue, delivery, envelope, dead.UNKNOWN_TASK, error=error)
            return
        if envelope.not_before is not None and envelope.not_before > time.time():
            await self._redelay(queue, delivery, envelope)
            return
        if delivery.attempt > task.opts.max_attempts:
            error = (
                f"delivered {delivery.attempt} times, but max_attempts is "
                f"{task.opts.max_attempts}: earlier attempts never finished (worker killed?)"
            )
            await self._dead(queue, delivery, envelope, dead.LOST, error=error, task=task)
            return
        try:
            codec = task.codec
            if len(envelope.params):
                params = codec.decode_params(envelope.params)
            else:
                params = codec.decode_loose(envelope.args, envelope.kwargs)
        except ArgumentError as exc:
            await self._dead(
                queue, delivery, envelope, dead.BAD_ARGUMENTS, error=str(exc), task=task
            )
            return
        if SLOT_HEADER in envelope.headers and not await self.books.first_of_slot(envelope):
            log.warning(
                "task %s job %s is a second copy of a scheduled slot; skipped", task.name,
                envelope.id,
            )  # fmt: skip
            await delivery.ack()
            return
        if task.opts.lease is not None:
            self.leases.set_lease(delivery, task.opts.lease)
            await delivery.extend(task.opts.lease)
        await self._execute(queue, delivery, envelope, task, params)

    async def _execute(
        self,
        queue: str,
        delivery: Delivery,
        envelope: Envelope,
        task: Task[..., Any],
        params: dict[str, Any],
    ) -> None:
        codec = task.codec
        args, kwargs = codec.call_args(params)
        if codec.injected:
            kwargs = {**kwargs, **self.resources.values_for(codec.injected)}
        token = set_current_job(
            envelope.id,
            task.name,
            queue,
            delivery.attempt,
            task.opts.max_attempts,
            envelope.enqueued_at,
            envelope.headers,
        )
        # Jobs nobody asks about cost no store round trips, nor the awaits to decide that.
        booked = task.opts.keep_result is not None or envelope.key is not None
        if booked:
            await self.books.started(envelope, task, delivery.attempt)
        try:
            value = await self._call(task, args, kwargs)
        except anyio.get_cancelled_exc_class():
            raise
        except Retry as signal:
            await self._failed(queue, delivery, envelope, task, signal, signal.delay)
        except Exception as exc:
            await self._failed(queue, delivery, envelope, task, exc, None)
        else:
            if booked:
                await self.books.succeeded(envelope, task, delivery.attempt, value)
            await delivery.ack()
            self.counts.succeeded += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "task %s job %s succeeded on attempt %d",
                    task.name,
                    envelope.id,
                    delivery.attempt,
                )
        finally:
            reset_current_job(token)

    async def _call(self, task: Task[..., Any], args: Any, kwargs: dict[str, Any]) -> Any:
        timeout = task.opts.timeout
        value: Any = None
        if isinstance(task, AsyncTask):
            fn: Callable[..., Any] = task.fn
            if timeout is None:
                return await fn(*args, **kwargs)
            with anyio.move_on_after(timeout) as scope:
                value = await fn(*args, **kwargs)
        else:
            call = functools.partial(task.fn, *args, **kwargs)
            if timeout is None:
                return await anyio.to_thread.run_sync(call, limiter=self.threads)
            with anyio.move_on_after(timeout) as scope:
                value = await anyio.to_thread.run_sync(
                    call, limiter=self.threads, abandon_on_cancel=True
                )
        if scope.cancelled_caught:
            raise _TimedOut(f"timed out after {timeout:g} s")
        return value

    async def _failed(
        self,
        queue: str,
        delivery: Delivery,
        envelope: Envelope,
        task: Task[..., Any],
        exc: BaseException,
        delay: float | None,
    ) -> None:
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, _TimedOut) else str(exc)
        error_type = "TimeoutError" if isinstance(exc, _TimedOut) else type(exc).__name__
        text = "".join(traceback.format_exception(exc)) if not isinstance(exc, Retry) else ""
        attempt = delivery.attempt
        if attempt < task.opts.max_attempts:
            wait = task.opts.backoff.delay(attempt) if delay is None else delay
            log.warning(
                "task %s job %s attempt %d/%d failed (%s); retrying in %.2f s",
                task.name,
                envelope.id,
                attempt,
                task.opts.max_attempts,
                error,
                wait,
            )
            await self.books.retrying(envelope, task, attempt, exc, text)
            await delivery.retry(wait)
            self.counts.retried += 1
            return
        log.error(
            "task %s job %s failed on its last attempt (%d/%d): %s; moved to %s",
            task.name,
            envelope.id,
            attempt,
            task.opts.max_attempts,
            error,
            dead_queue(queue),
        )
        await self._dead(
            queue, delivery, envelope, dead.FAILED, error=error, tb=text, task=task,
            error_type=error_type, message=str(exc) if error_type != "TimeoutError" else error,
        )  # fmt: skip

    async def _dead(
        self,
        queue: str,
        delivery: Delivery,
        envelope: Envelope | None,
        reason: str,
        *,
        error: str,
        tb: str | None = None,
        task: Task[..., Any] | None = None,
        error_type: str = "",
        message: str | None = None,
    ) -> None:
        if reason != dead.FAILED:
            log.error(
                "message %s on queue %s: %s (%s); moved to %s",
                delivery.id,
                queue,
                reason,
                error,
                dead_queue(queue),
            )
        body = dead.dead_letter_body(
            queue,
            delivery.body,
            envelope,
            reason=reason,
            attempt=delivery.attempt,
            error=error,
            traceback=tb,
        )
        await self.broker.publish(dead_queue(queue), [Outgoing(body)])
        await self.books.dead(
            envelope, task, delivery.attempt, error_type or reason,
            error if message is None else message, tb or "",
        )  # fmt: skip
        await delivery.ack()
        self.counts.dead += 1

    async def _redelay(self, queue: str, delivery: Delivery, envelope: Envelope) -> None:
        """Send a job that is not due yet back for the rest of its delay, as a new message."""
        assert envelope.not_before is not None
        remaining = envelope.not_before - time.time()
        max_delay = self.broker.capabilities.max_delay
        delay = remaining if max_delay is None else min(remaining, max_delay)
        not_before = envelope.not_before if remaining > delay else None
        envelope.not_before = not_before
        await self.broker.publish(queue, [Outgoing(encode_envelope(envelope), delay)])
        await delivery.ack()
