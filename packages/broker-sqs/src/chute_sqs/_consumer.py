"""Receiving from one queue, and settling what was received.

The lease is SQS's visibility timeout. Each delivery remembers when its receive was sent (a
moment no later than the server started the visibility clock) and so knows, on this machine's
clock, when its lease lapses. Settlements are fenced on that deadline: SQS may delete a
message through an old receipt handle even after another consumer received it again, so an
ack, extend or retry whose lease lapsed is not sent, and the message comes back as at-least-
once delivery requires.

``release`` must give a message back without raising ``attempt``, but SQS raises its receive
count on every receive. So the broker sends a copy carrying a ``chute-base`` one lower and
deletes the original. ``retry`` sends a copy too, delayed, with ``chute-base`` equal to the
attempt: the copy waits as a delayed message (``stats`` counts it so, and no 12-hour ceiling
applies), where a visibility change would leave it looking like a message in flight. FIFO
queues, where a copy would lose its place in the group, change the visibility instead (so
there a released message's attempt grows by one).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from chute.broker import Ack
from chute.errors import BrokerError
from chute_sqs._client import SqsClient, StaleReceipt
from chute_sqs._options import MAX_VISIBILITY, is_fifo
from chute_sqs._wire import (
    MAX_NATIVE_DELAY,
    Received,
    copy_attributes,
    parse_message,
    whole_seconds,
)

if TYPE_CHECKING:
    from chute_sqs.broker import SqsBroker

log = logging.getLogger("chute_sqs")

# An ack sent this close to the lease's end might reach SQS after it: it is not sent.
_FENCE = 0.5
# Kept free below the 12-hour visibility ceiling, for clock differences.
_CEILING_MARGIN = 10.0
# How long a consumer with a few free slots waits for more before receiving.
_LINGER = 0.05
# Invisibility for messages received in ON_RECEIPT mode until their delete lands.
_RECEIPT_VISIBILITY = 30


class _Signal:
    """Wakes every current waiter; a later waiter waits for the next notification."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class Consumer:
    """One ``consume()`` of one queue: receives run as the iterator is read, within the
    prefetch, so nothing runs in the background between two reads."""

    def __init__(
        self, broker: SqsBroker, queue: str, ack: Ack, prefetch: int, lease: float
    ) -> None:
        self.broker = broker
        self.client: SqsClient = broker._client  # pyright: ignore[reportPrivateUsage]
        self.queue = queue
        self.ack = ack
        self.fifo = is_fifo(queue)
        self.prefetch = prefetch
        self.receivers = max(1, min(self.client.options.receivers, math.ceil(prefetch / 10)))
        self.visibility = (
            whole_seconds(lease) + 1 if ack is Ack.ON_COMPLETION else _RECEIPT_VISIBILITY
        )
        self.unsettled = 0
        self.buffer: deque[SqsDelivery] = deque()
        self.settled = _Signal()

    async def deliveries(self) -> AsyncIterator[SqsDelivery]:
        while True:
            if not self.buffer:
                await self._fill()
            yield self.buffer.popleft()

    async def _fill(self) -> None:
        pause = 0.1
        batch = min(10, self.prefetch)
        while True:
            free = self.prefetch - self.unsettled
            if free <= 0:
                await self.settled.wait()
                continue
            if free < batch and self.unsettled:
                # A slot or two just freed: wait a moment for more, and fetch a fuller batch
                # in one request rather than one message per request.
                with anyio.move_on_after(_LINGER):
                    while self.prefetch - self.unsettled < batch:
                        await self.settled.wait()
                free = self.prefetch - self.unsettled
            sizes: list[int] = []
            while free > 0 and len(sizes) < self.receivers:
                sizes.append(min(10, free))
                free -= sizes[-1]
            got: list[SqsDelivery] = []
            errors: list[BrokerError] = []
            # A receive, once sent, is seen through even when the reader is cancelled: SQS
            # hides what it hands out for the whole lease, and it must be given back, not
            # stranded. So cancelling a reader may take up to ``wait`` seconds.
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as tg:
                    for i, n in enumerate(sizes):
                        # Only the first receive long-polls; the others take what is there
                        # at once, so one message never waits behind an empty long poll.
                        wait = self.client.options.wait if i == 0 else 0
                        tg.start_soon(self._receive_into, n, wait, got, errors)
            if got:
                self.unsettled += len(got)
                self.buffer.extend(got)
                return
            if errors:
                log.warning("queue %r: receive failed, trying again in %.1f s: %s",
                            self.queue, pause, errors[0])  # fmt: skip
                await anyio.sleep(pause)
                pause = min(pause * 2, 5.0)
            else:
                pause = 0.1
                # The receive was shielded: a cancellation that arrived meanwhile lands here.
                await anyio.lowlevel.checkpoint()

    async def _receive_into(
        self, n: int, wait: int, got: list[SqsDelivery], errors: list[BrokerError]
    ) -> None:
        try:
            got.extend(await self._receive(n, wait))
        except BrokerError as exc:
            errors.append(exc)

    async def _receive(self, n: int, wait: int) -> list[SqsDelivery]:
        sent_at = time.monotonic()

        async def receive(url: str) -> Any:
            return await self.client.call(
                self.queue,
                "receive_message",
                QueueUrl=url,
                MaxNumberOfMessages=n,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.visibility,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            )

        result = await self.client.on_queue(self.queue, receive)
        received = [parse_message(m) for m in result.get("Messages", [])]
        if not received:
            return []
        deadline = sent_at + self.visibility - _FENCE
        if self.ack is Ack.ON_RECEIPT:
            # At most once: hand out only what is deleted; what is not comes back later.
            deleted = await self.client.delete_now(self.queue, [r.handle for r in received])
            received = [r for r in received if r.handle in deleted]
        out: list[SqsDelivery] = []
        for r in received:
            delivery = SqsDelivery(self, r, sent_at, deadline)
            if r.due is not None and r.due > time.time():
                await delivery.postpone(r.due)
            else:
                out.append(delivery)
        return out

    async def close(self) -> None:
        """Give back everything received and not yet yielded."""
        buffered = list(self.buffer)
        self.buffer.clear()
        await release_all(buffered)


async def release_all(deliveries: list[SqsDelivery]) -> None:
    """Release ``deliveries`` together: their copies go out in shared batches."""
    if not deliveries:
        return
    consumer = deliveries[0].consumer
    copies: list[SqsDelivery] = []
    for delivery in deliveries:
        if not delivery.settle():
            continue
        if consumer.ack is Ack.ON_COMPLETION:
            if not delivery.live():
                continue
            if consumer.fifo:
                await delivery.change_visibility(0)
                continue
        copies.append(delivery)
    if not copies:
        return
    client = consumer.client
    entries = [
        client.entry(consumer.queue, d.body, 0.0, None, copy_attributes(d.attempt - 1, d.id, None))
        for d in copies
    ]
    await client.send(consumer.queue, entries)
    if consumer.ack is Ack.ON_COMPLETION:
        for d in copies:
            client.queue_delete(consumer.queue, d.handle, d.deadline)
        await client.flush()


class SqsDelivery:
    """A message received from SQS."""

    __slots__ = ("_done", "attempt", "body", "consumer", "deadline", "handle", "id", "sent_at")

    def __init__(self, consumer: Consumer, r: Received, sent_at: float, deadline: float) -> None:
        self.consumer = consumer
        self.handle = r.handle
        self.id = r.id
        self.body = r.body
        self.attempt = r.attempt
        self.sent_at = sent_at
        self.deadline = deadline
        self._done = False

    def __repr__(self) -> str:
        return f"<SqsDelivery {self.id} attempt={self.attempt}>"

    def settle(self) -> bool:
        """Mark settled; ``False`` if it already was."""
        if self._done:
            return False
        self._done = True
        consumer = self.consumer
        consumer.unsettled -= 1
        consumer.settled.notify()
        return True

    def live(self) -> bool:
        """Whether this delivery's lease has surely not lapsed yet."""
        return time.monotonic() < self.deadline

    def _ceiling(self) -> float:
        """Seconds of invisibility SQS still grants this receive (12 hours from it)."""
        return self.sent_at + MAX_VISIBILITY - _CEILING_MARGIN - time.monotonic()

    async def change_visibility(self, seconds: int) -> bool:
        consumer = self.consumer
        started = time.monotonic()

        async def change(url: str) -> Any:
            return await consumer.client.call(
                consumer.queue, "change_message_visibility",
                QueueUrl=url, ReceiptHandle=self.handle, VisibilityTimeout=seconds,
            )  # fmt: skip

        try:
            await consumer.client.on_queue(consumer.queue, change, create=False)
        except StaleReceipt:
            return False
        self.deadline = started + seconds - _FENCE
        return True

    async def ack(self) -> None:
        if not self.settle() or self.consumer.ack is Ack.ON_RECEIPT:
            return
        client = self.consumer.client
        client.queue_delete(self.consumer.queue, self.handle, self.deadline)
        await client.flush()

    async def retry(self, delay: float) -> None:
        if not self.settle():
            return
        consumer = self.consumer
        if consumer.ack is Ack.ON_COMPLETION and not self.live():
            return
        if consumer.fifo:
            # A copy would lose the message's place in its group: keep it invisible instead.
            seconds = whole_seconds(delay)
            ceiling = max(int(self._ceiling()), 0)
            if seconds > ceiling:
                log.warning("queue %r: retry delay %.0f s cut to SQS's 12-hour ceiling",
                            consumer.queue, delay)  # fmt: skip
            await self.change_visibility(min(seconds, ceiling))
            return
        await self._send_copy(base=self.attempt, delay=delay)

    async def postpone(self, due: float) -> None:
        """Not due yet: send a copy for the rest of the delay, attempt unchanged."""
        self._done = True
        await self._send_copy(base=self.attempt - 1, delay=due - time.time(), due=due)

    async def _send_copy(self, *, base: int, delay: float, due: float | None = None) -> None:
        consumer = self.consumer
        client = consumer.client
        if delay > MAX_NATIVE_DELAY and due is None:
            due = time.time() + delay
        native = min(float(MAX_NATIVE_DELAY), max(0.0, delay))
        entry = client.entry(consumer.queue, self.body, native, None,
                             copy_attributes(base, self.id, due))  # fmt: skip
        await client.send(consumer.queue, [entry])
        if consumer.ack is Ack.ON_COMPLETION:
            client.queue_delete(consumer.queue, self.handle, self.deadline)
            await client.flush()

    async def release(self) -> None:
        await release_all([self])

    async def extend(self, lease: float) -> None:
        consumer = self.consumer
        if self._done or consumer.ack is Ack.ON_RECEIPT or not self.live():
            return
        seconds = min(whole_seconds(lease) + 1, int(self._ceiling()))
        if seconds <= 0:
            log.warning("queue %r: message %s reached SQS's 12-hour visibility ceiling; its "
                        "lease can no longer be extended", consumer.queue, self.id)  # fmt: skip
            return
        await self.change_visibility(seconds)
