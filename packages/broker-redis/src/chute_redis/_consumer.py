"""One consumer of one queue: a claim loop, a wake-up listener, and its deliveries.

The loop is the only task that talks to Redis for the consumer. Each round trip is one
script call that first applies every settlement queued since the last one (acks, retries,
releases, extensions) and then claims up to the free prefetch, so under load acks and
claims travel together and batches grow by themselves. When a claim comes back short the
loop sleeps until a wake-up message (published by whoever fills an empty queue), a
settlement, or the next due time the script reported (a delayed message or a lease expiry).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import redis.exceptions as rex

from chute.broker import Ack
from chute.errors import BrokerConfigConflict, BrokerError
from chute_redis._client import Arg, fail, run_script
from chute_redis._delivery import RedisDelivery
from chute_redis._scripts import CONSUME, Keys

if TYPE_CHECKING:
    from chute_redis.broker import RedisBroker

log = logging.getLogger("chute.redis")

IDLE_CHECK = 5.0
"""Longest an idle consumer sleeps without looking, in case a wake-up message was lost."""

PING_EVERY = 15.0
"""Seconds of silence after which the wake-up connection is pinged, and declared dead if
the next such period passes without an answer."""

_RETRYABLE = (rex.ConnectionError, rex.TimeoutError, OSError)


class Signal:
    """Wakes every task waiting at the time of :meth:`notify`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float = math.inf) -> None:
        if timeout <= 0:
            return
        if self._event is None:
            self._event = anyio.Event()
        with anyio.move_on_after(timeout):
            await self._event.wait()


class Backoff:
    """Growing pauses between failed attempts: 50 ms doubling up to 2 s."""

    def __init__(self) -> None:
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    async def pause(self, signal: Signal) -> None:
        """Sleep, or return early when ``signal`` fires."""
        self.failures += 1
        await signal.wait(min(2.0, 0.05 * 2 ** (self.failures - 1)))


class Consumer:
    def __init__(
        self, broker: RedisBroker, queue: str, ack: Ack, prefetch: int, lease: float
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.keys = Keys.of(broker.prefix, queue)
        self.leased = ack is Ack.ON_COMPLETION
        self.prefetch = max(1, prefetch)
        self.lease_ms = max(1, round(lease * 1000))
        self.unsettled = 0
        self.buffer: deque[RedisDelivery] = deque()
        self.acks: list[Arg] = []
        self.ops: list[Arg] = []
        self.kick = Signal()
        self.arrived = Signal()
        self.notes = 0
        # The notes count when the last claim came back short; None while more may be ready.
        self.idle_at: int | None = None
        self.due = 0.0
        self.running = False
        self.stopping = False
        self.error: BrokerError | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.pubsub: Any = None
        self._token = secrets.token_hex(6)
        self._claims = 0

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        # Plain asyncio tasks rather than a task group held open across consume()'s yield:
        # the caller may then close consumers in any order relative to its own task groups.
        # redis-py's client runs on asyncio only, so nothing is lost.
        self.running = True
        self._tasks = [asyncio.create_task(self.run()), asyncio.create_task(self.listen())]

    async def stop(self) -> None:
        """Stop the loop after its current round trip, and the listener at once."""
        self.stopping = True
        self.kick.notify()
        listener = self._tasks[1]
        # redis-py can swallow a cancellation that lands while a read times out; insist.
        while not listener.done():
            listener.cancel()
            await asyncio.wait([listener], timeout=0.05)
        await asyncio.wait(self._tasks)
        self.running = False
        if self.pubsub is not None:
            await self.pubsub.aclose()
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("queue %s: consumer task failed", self.queue, exc_info=task.exception())

    def _want(self) -> int:
        free = self.prefetch - self.unsettled
        if free <= 0:
            return 0
        if self.idle_at is None or self.idle_at != self.notes or time.monotonic() >= self.due:
            return free
        return 0

    async def run(self) -> None:
        backoff = Backoff()
        try:
            while self.error is None and not self.stopping:
                if not self._want() and not self.acks and not self.ops:
                    free = self.prefetch > self.unsettled
                    await self.kick.wait(self.due - time.monotonic() if free else math.inf)
                    continue
                # Let settlements made in this same tick join the round trip.
                await anyio.lowlevel.checkpoint()
                try:
                    await self._round_trip()
                    backoff.reset()
                except _RETRYABLE as exc:
                    if backoff.failures == 0:
                        log.warning("queue %s: lost Redis (%s); reconnecting", self.queue, exc)
                    await backoff.pause(self.kick)
                except rex.RedisError as exc:
                    try:
                        fail(exc, self.broker.url, self.queue)
                    except BrokerConfigConflict as err:
                        self.error = err
                    except BrokerError as err:
                        # Out of memory, a busy script, a read-only replica: the server may
                        # recover, so the consumer waits and tries again.
                        log.error("%s; retrying", err)
                        await backoff.pause(self.kick)
        except BaseException as exc:
            if self.error is None:
                self.error = BrokerError(f"queue {self.queue!r}: consumer stopped: {exc!r}")
            raise
        finally:
            self.arrived.notify()

    async def _round_trip(self) -> None:
        want = self._want()
        acks, self.acks = self.acks, []
        ops, self.ops = self.ops, []
        seen = self.notes
        self._claims += 1
        token = f"{self._token}{self._claims:x}"
        try:
            reply = await self._call(acks, ops, want, token)
        except (rex.RedisError, OSError):
            # Lease settlements are fenced by token and so safe to send again; a requeue
            # from an at-most-once consumer is not (it could run twice), so it is dropped.
            self.acks[:0] = acks
            if self.leased:
                self.ops[:0] = ops
            raise
        wait_ms: int = reply[0]
        now = time.monotonic()
        self.due = now + (IDLE_CHECK if wait_ms < 0 else min(IDLE_CHECK, wait_ms / 1000))
        if want:
            items: list[bytes] = reply[1:]
            self.idle_at = None if len(items) >= want else seen
            if items:
                self.unsettled += len(items)
                self.buffer.extend(RedisDelivery(self, item, token) for item in items)
                self.arrived.notify()

    async def _call(self, acks: list[Arg], ops: list[Arg], want: int, token: str) -> Any:
        k = self.keys
        args: list[Arg] = [k.channel, "c" if self.leased else "r", token, want, self.lease_ms]
        args.append(len(acks))
        args += acks
        args += ops
        return await run_script(
            self.broker.client, CONSUME, [k.ready, k.delayed, k.leased, k.held], args
        )

    async def flush(self) -> None:
        """Send queued settlements now (used once the loop has stopped)."""
        if not self.acks and not self.ops:
            return
        acks, self.acks = self.acks, []
        ops, self.ops = self.ops, []
        try:
            await self._call(acks, ops, 0, self._token)
        except (rex.RedisError, OSError) as exc:
            fail(exc, self.broker.url, self.queue)

    async def listen(self) -> None:
        """Count wake-up messages; (re)subscribing counts as one, so nothing is missed."""
        backoff = Backoff()
        while True:
            self.pubsub = pubsub = self.broker.client.pubsub()  # pyright: ignore[reportUnknownMemberType]
            try:
                await pubsub.subscribe(self.keys.channel)
                unanswered = 0
                while True:
                    get: Any = pubsub.get_message
                    message: object = await get(timeout=PING_EVERY)
                    if message is None:
                        if unanswered:
                            raise rex.ConnectionError("no answer to PING on the wake-up link")
                        await pubsub.ping()  # pyright: ignore[reportUnknownMemberType]
                        unanswered = 1
                        continue
                    unanswered = 0
                    backoff.reset()
                    self.notes += 1
                    self.kick.notify()
            except _RETRYABLE as exc:
                if backoff.failures == 0:
                    log.warning("queue %s: wake-up link lost (%s); reconnecting", self.queue, exc)
                await pubsub.aclose()
                await backoff.pause(Signal())

    # -- what the caller sees -------------------------------------------------------------

    async def deliveries(self) -> AsyncIterator[RedisDelivery]:
        while True:
            while not self.buffer:
                if self.error is not None:
                    raise self.error
                if not self.running:
                    raise BrokerError(f"queue {self.queue!r}: the consumer is closed")
                await self.arrived.wait()
            yield self.buffer.popleft()

    async def close(self) -> None:
        """Give back every buffered delivery and send what is queued (loop stopped)."""
        # Reversed: each goes back to the head of the list, so they keep their order.
        for delivery in reversed(self.buffer):
            delivery.settle("l")
        self.buffer.clear()
        await self.flush()

    def queue_op(self, op: str, arg: Arg, number: Arg) -> None:
        self.ops += (op, arg, number)
        self.kick.notify()
