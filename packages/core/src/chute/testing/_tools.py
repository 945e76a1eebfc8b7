"""Small tools the conformance tests share: an inbox that reads a consumer, timing, checks."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import anyio

from chute.broker import Ack, Broker, Delivery, Outgoing


class Inbox:
    """Deliveries from one consumer, read with deadlines.

    A background task drains the consumer's iterator into a buffer, so a test can wait for a
    delivery with a timeout without cancelling the broker's iterator mid-step.
    """

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[tuple[float, Delivery]](
            math.inf
        )
        self.received = 0

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def pump(self, deliveries: AsyncIterator[Delivery]) -> None:
        async for delivery in deliveries:
            self.received += 1
            self._send.send_nowait((time.monotonic(), delivery))

    async def get(self, timeout: float, what: str = "a delivery") -> Delivery:
        """The next delivery; fails the test after ``timeout`` seconds."""
        return (await self.get_timed(timeout, what))[1]

    async def get_timed(self, timeout: float, what: str = "a delivery") -> tuple[float, Delivery]:
        """The next delivery and the ``time.monotonic()`` it arrived at."""
        with anyio.move_on_after(timeout):
            return await self._receive.receive()
        raise AssertionError(f"expected {what} within {timeout:g} s, got none")

    async def take(self, n: int, timeout: float) -> list[Delivery]:
        """``n`` deliveries, all within ``timeout`` seconds in total."""
        got: list[Delivery] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            remaining = deadline - time.monotonic()
            try:
                got.append(await self.get(max(remaining, 0.0)))
            except AssertionError:
                raise AssertionError(
                    f"expected {n} deliveries within {timeout:g} s, got {len(got)}"
                ) from None
        return got

    async def nothing_for(self, seconds: float, why: str) -> None:
        """Assert that no delivery arrives for ``seconds``.

        Absence can only be shown by waiting; the wait is explicit and bounded.
        """
        with anyio.move_on_after(seconds):
            _, delivery = await self._receive.receive()
            raise AssertionError(
                f"{why}: got message {delivery.id} (attempt {delivery.attempt}) "
                f"body {delivery.body[:40]!r}"
            )

    def pending(self) -> list[Delivery]:
        """Deliveries already received and not yet read, without waiting."""
        out: list[Delivery] = []
        while True:
            try:
                out.append(self._receive.receive_nowait()[1])
            except anyio.WouldBlock:
                return out


@asynccontextmanager
async def reading(
    broker: Broker, queue: str, *, ack: Ack, prefetch: int, lease: float
) -> AsyncGenerator[Inbox, None]:
    """Consume ``queue`` into an :class:`Inbox` for the duration of the block."""
    inbox = Inbox()
    async with broker.consume(queue, ack=ack, prefetch=prefetch, lease=lease) as deliveries:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(inbox.pump, deliveries)
                try:
                    yield inbox
                finally:
                    tg.cancel_scope.cancel()
        finally:
            # Deliveries the test never read go back, as a worker's unstarted ones would.
            with anyio.CancelScope(shield=True):
                for delivery in inbox.pending():
                    await delivery.release()
            inbox.close()


async def publish(
    broker: Broker, queue: str, bodies: Sequence[bytes], *, delay: float = 0.0, batch: int = 100
) -> None:
    for start in range(0, len(bodies), batch):
        chunk = bodies[start : start + batch]
        await broker.publish(queue, [Outgoing(body, delay) for body in chunk])


async def eventually(check: Callable[[], Awaitable[object]], timeout: float, what: str) -> None:
    """Poll the async callable ``check`` until it returns true, failing after ``timeout``."""
    last: object = None
    with anyio.move_on_after(timeout):
        while True:
            last = await check()
            if last:
                return
            await anyio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:g} s (last: {last!r})")
