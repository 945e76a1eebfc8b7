"""Consuming a queue from its durable JetStream pull consumer.

``attempt`` is the server's delivery count plus the ``Chute-Attempts`` header, which copies
carry: :meth:`JsDelivery.release` and a delayed :meth:`JsDelivery.retry` publish a fresh copy
(acknowledging the original) whose header says how many attempts came before, so a release
does not count and a crash never loses the count. A retry without delay is a plain negative
ack, which the server counts itself.

Stale settlements are fenced on the client: JetStream removes a message on any ack for its
sequence, even one sent for a delivery whose ack wait ran out and which was redelivered
since. A delivery therefore tracks when the server's grant ends (from the moment it arrived
or was last extended) and, once within :attr:`Settings.lease_margin` of that, no longer acks,
naks, extends or copies: the message is back on the server, and at-least-once delivery runs
it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator

import anyio
import nats.errors
from nats.aio.msg import Msg

from chute.broker import Ack
from chute.errors import BrokerError
from chute_nats._connection import Connection, delivery_info
from chute_nats._delays import Mover
from chute_nats._leases import LeaseKeeper
from chute_nats._pull import Puller, Signal
from chute_nats._settings import ATTEMPTS, DUE, ORIGIN, consumer_name
from chute_nats._setup import ensure_consumer, store

log = logging.getLogger("chute.nats")


class JsConsumer:
    """One ``consume()`` of a queue in JetStream mode."""

    def __init__(
        self, conn: Connection, keeper: LeaseKeeper, queue: str, ack: Ack, prefetch: int,
        lease: float,
    ) -> None:  # fmt: skip
        self.conn = conn
        self.keeper = keeper
        self.queue = queue
        self.ack = ack
        self.prefetch = prefetch
        self.lease = lease
        self.unsettled = 0
        self.wake = Signal()
        # Arrived, not yet handed out. In ON_RECEIPT mode, not yet acknowledged either:
        # those wait in _confirming while their acks are confirmed, then in _ready.
        self._buffer: deque[JsDelivery] = deque()
        self._confirming: list[JsDelivery] = []
        self._ready: deque[JsDelivery] = deque()
        self._flushing: asyncio.Future[None] | None = None
        self._excess: list[JsDelivery] = []
        self._puller = Puller(conn, consumer_name("q", queue), self._arrived, self.wake)
        self._mover = Mover(conn, queue)

    async def open(self) -> None:
        await ensure_consumer(self.conn, "q", self.queue)
        await self._mover.open()
        await self._puller.start()

    def _arrived(self, msg: Msg, expected: bool) -> None:
        delivery = JsDelivery(self, msg, time.monotonic())
        self.unsettled += 1
        if self.ack is Ack.ON_COMPLETION:
            self.keeper.track(delivery)
        if not expected and self.unsettled + self._puller.outstanding() > self.prefetch:
            # An answer to a request given up for lost (after a reconnect): over the limit.
            self._excess.append(delivery)
        else:
            self._buffer.append(delivery)

    def settled(self, delivery: JsDelivery) -> None:
        self.unsettled -= 1
        self.keeper.untrack(delivery)
        self.wake.set()

    async def deliveries(self) -> AsyncGenerator[JsDelivery]:
        receipt = self.ack is Ack.ON_RECEIPT
        while True:
            if receipt and (self._buffer or self._confirming):
                await self._take()
            ready = self._ready if receipt else self._buffer
            if ready:
                delivery = ready.popleft()
                if delivery.on_server and delivery.stale():
                    # Left unread past its lease: it may be running elsewhere by now.
                    delivery.drop()
                    continue
                yield delivery
            elif not (receipt and self._confirming):
                await self._fill()

    async def _fill(self) -> None:
        try:
            with self.conn.failures(self.queue, "fetching"):
                if self._excess:
                    excess, self._excess = self._excess, []
                    with anyio.CancelScope(shield=True):
                        await asyncio.gather(*(d.release() for d in excess))
                if self._puller.gone:
                    await ensure_consumer(self.conn, "q", self.queue)
                    self._puller.gone = False
                outstanding = self._puller.outstanding()
                free = self.prefetch - self.unsettled - outstanding
                if free > 0 and outstanding == 0 and self.conn.connected:
                    await self._puller.request(free)
        except BrokerError as exc:
            # Recover by ourselves: the connection comes back, or the next try tells more.
            log.warning("queue %r: %s; retrying", self.queue, exc)
            await asyncio.sleep(0.5)
            return
        if not self._buffer:
            wait = self._puller.next_deadline() - time.monotonic()
            await self.wake.wait(wait if not math.isinf(wait) else 5.0)

    async def _take(self) -> None:
        """``ON_RECEIPT``: acknowledge messages, and hand them out once the server has the acks.

        The acks must reach the server first, or a consumer that dies now could see those
        messages delivered again elsewhere; messages whose acks cannot be confirmed are
        dropped, unyielded. Confirmation is pipelined: one round trip confirms every ack sent
        before it, while the messages that arrive meanwhile wait for the next one.
        """
        if self._flushing is None and self._buffer:
            batch = [d for d in self._buffer if not d.stale()]
            for delivery in self._buffer:
                if delivery.stale():
                    # Buffered past its ack wait: the server may have given it to someone else.
                    delivery.drop()
            self._buffer.clear()
            # Recorded first: if this consumer is cancelled while sending, close() finds them.
            self._confirming = batch
            try:
                for delivery in batch:
                    await self.conn.send(delivery.reply)
            except BrokerError as exc:
                self._confirming = []
                self._unconfirmed(batch, exc)
                return
            self._flushing = asyncio.ensure_future(self.conn.flush())
        flushing = self._flushing
        if flushing is None or (self._ready and not flushing.done()):
            return
        # Shielded, and the state kept if cancelled here: close() gives these back.
        try:
            await asyncio.shield(flushing)
        except (nats.errors.Error, TimeoutError) as exc:
            self._unconfirmed(self._confirming, exc)
        else:
            for delivery in self._confirming:
                delivery.on_server = False
            self._ready.extend(self._confirming)
        self._flushing = None
        self._confirming = []

    def _unconfirmed(self, batch: list[JsDelivery], exc: BaseException) -> None:
        log.warning("queue %r: could not acknowledge on receipt (%s); %d message(s) left to "
                    "the server", self.queue, exc, len(batch))  # fmt: skip
        for delivery in batch:
            delivery.drop()

    async def copy(self, delivery: JsDelivery, attempts: int, delay: float) -> None:
        """Publish a fresh copy of ``delivery`` that has had ``attempts`` attempts."""
        settings = self.conn.settings
        headers = {ATTEMPTS: str(attempts), ORIGIN: delivery.id}
        if delay > 0:
            headers[DUE] = f"{time.time() + delay:.6f}"
            subject = settings.delayed_subject(self.queue)
        else:
            subject = settings.ready_subject(self.queue)
        await store(self.conn, subject, delivery.body, headers)

    async def close(self) -> None:
        await self._puller.close()
        await self._mover.close()
        if self._flushing is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._flushing
            # Confirmed or not, these were acknowledged: giving back means a copy (and a
            # second ack, which the server ignores if the first arrived).
        left = [*self._ready, *self._confirming, *self._buffer, *self._excess]
        self._ready.clear()
        self._confirming = []
        self._buffer.clear()
        self._excess.clear()
        results = await asyncio.gather(*(d.release() for d in left), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("queue %r: %d prefetched message(s) not given back (%s); they return "
                        "when their lease lapses", self.queue, len(failed), failed[0])  # fmt: skip


class JsDelivery:
    """One message from a JetStream consumer. See the module docstring for the fencing."""

    __slots__ = ("_consumer", "_done", "attempt", "body", "deadline", "id", "lease_until",
                 "on_server", "reply")  # fmt: skip

    def __init__(self, consumer: JsConsumer, msg: Msg, now: float) -> None:
        headers = msg.headers or {}
        delivered, sequence = delivery_info(msg.reply)
        self._consumer = consumer
        self._done = False
        self.reply = msg.reply
        self.id = headers.get(ORIGIN, sequence)
        self.body = msg.data
        self.attempt = int(headers.get(ATTEMPTS, "0")) + delivered
        self.deadline = now + consumer.conn.settings.ack_wait
        self.lease_until = now + consumer.lease
        # Whether the server still holds this delivery unacknowledged.
        self.on_server = True

    def __repr__(self) -> str:
        return f"<JsDelivery {self.id} attempt={self.attempt}>"

    @property
    def settled(self) -> bool:
        return self._done

    def stale(self) -> bool:
        """Whether the server may have given this message to someone else by now."""
        margin = self._consumer.conn.settings.lease_margin
        return time.monotonic() >= self.deadline - margin

    def _settle(self) -> bool:
        if self._done:
            return False
        self._done = True
        self._consumer.settled(self)
        return True

    def drop(self) -> None:
        """Forget this delivery without telling the server (it redelivers in time)."""
        self._settle()

    def _owned(self) -> bool:
        if not self.on_server:
            return False
        if self.stale():
            log.info("message %s: its lease lapsed; a late settlement is ignored", self.id)
            return False
        return True

    async def ack(self) -> None:
        if self._settle() and self._owned():
            await self._consumer.conn.send(self.reply)

    async def retry(self, delay: float) -> None:
        if not self._settle():
            return
        consumer = self._consumer
        if self.on_server:
            if not self._owned():
                return
            if delay <= 0:
                await consumer.conn.send(self.reply, b"-NAK")
                return
        await consumer.copy(self, self.attempt, delay)
        if self._owned():
            await consumer.conn.send(self.reply)

    async def release(self) -> None:
        if not self._settle():
            return
        if self.on_server and self.stale():
            return
        await self._consumer.copy(self, self.attempt - 1, 0.0)
        if self._owned():
            await self._consumer.conn.send(self.reply)

    async def extend(self, lease: float) -> None:
        if self._done or not self.on_server or self.stale():
            return
        self.lease_until = time.monotonic() + lease
        await self.progress()

    async def progress(self) -> None:
        """Tell the server the message is still being worked on: a full ack wait more."""
        now = time.monotonic()
        await self._consumer.conn.send(self.reply, b"+WPI")
        self.deadline = now + self._consumer.conn.settings.ack_wait
