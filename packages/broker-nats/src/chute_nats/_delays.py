"""Delayed messages: stored on their own subject, moved to the queue when due.

``publish(delay=...)`` and ``retry(delay)`` store the message on ``<ns>.d.<queue>`` with a
``Chute-Due`` header. Every consumer of the queue runs a mover on that subject's durable
consumer: a message not yet due is negatively acknowledged with the remaining time as its
redelivery delay, so the server, not a worker, holds it meanwhile; a due one is published
to ``<ns>.q.<queue>`` and then acknowledged. The copy carries ``Nats-Msg-Id`` derived from
the delayed message's sequence, so a mover that dies between the two steps cannot make the
server store it twice within the stream's duplicate window. A delay has no upper bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque

from nats.aio.msg import Msg

from chute.errors import BrokerError
from chute_nats._connection import Connection, delivery_info
from chute_nats._pull import Puller, Signal
from chute_nats._settings import ATTEMPTS, DUE, MSG_ID, ORIGIN, consumer_name
from chute_nats._setup import ensure_consumer, store

log = logging.getLogger("chute.nats")

_BATCH = 64
# A message this close to due is moved rather than sent round the server once more.
_EARLY = 0.001


def nak_delay(seconds: float) -> bytes:
    """The payload of a negative ack asking for redelivery after ``seconds``."""
    return b"-NAK " + json.dumps({"delay": max(1, round(seconds * 1e9))}).encode()


class Mover:
    """Moves ``queue``'s delayed messages to the queue as they come due."""

    def __init__(self, conn: Connection, queue: str) -> None:
        self.conn = conn
        self.queue = queue
        self.wake = Signal()
        self._inbox: deque[Msg] = deque()
        self._puller = Puller(conn, consumer_name("d", queue), self._arrived, self.wake)
        self._task: asyncio.Task[None] | None = None

    def _arrived(self, msg: Msg, expected: bool) -> None:
        del expected
        self._inbox.append(msg)

    async def open(self) -> None:
        await ensure_consumer(self.conn, "d", self.queue)
        await self._puller.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._puller.close()
        # Whatever arrived and was not handled goes back for the next mover, still delayed.
        while self._inbox and self.conn.connected:
            msg = self._inbox.popleft()
            wait = float((msg.headers or {}).get(DUE, "0")) - time.time()
            with contextlib.suppress(BrokerError):
                await self.conn.send(msg.reply, nak_delay(wait) if wait > 0 else b"-NAK")

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except (BrokerError, OSError, TimeoutError) as exc:
                log.warning("queue %r: moving delayed messages failed (%s); retrying",
                            self.queue, exc)  # fmt: skip
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("queue %r: moving delayed messages failed; retrying", self.queue)
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        with self.conn.failures(self.queue, "moving delayed messages"):
            if self._puller.gone:
                await ensure_consumer(self.conn, "d", self.queue)
                self._puller.gone = False
            if self._inbox:
                batch = list(self._inbox)
                self._inbox.clear()
                results = await asyncio.gather(
                    *(self._handle(msg) for msg in batch), return_exceptions=True
                )
                failed = [r for r in results if isinstance(r, Exception)]
                if failed:
                    # Those messages come back after the delayed consumer's ack wait.
                    raise failed[0]
                return
            if self._puller.outstanding() == 0 and self.conn.connected:
                await self._puller.request(_BATCH)
        wait = self._puller.next_deadline() - time.monotonic()
        await self.wake.wait(wait if not math.isinf(wait) else 1.0)

    async def _handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        wait = float(headers.get(DUE, "0")) - time.time()
        if wait > _EARLY:
            await self.conn.send(msg.reply, nak_delay(wait))
            return
        _, sequence = delivery_info(msg.reply)
        copy = {key: headers[key] for key in (ATTEMPTS, ORIGIN) if key in headers}
        copy[MSG_ID] = f"{self.conn.settings.namespace}.moved.{sequence}"
        await store(self.conn, self.conn.settings.ready_subject(self.queue), msg.data, copy)
        await self.conn.send(msg.reply)
