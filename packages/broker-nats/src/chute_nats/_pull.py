"""Pull requests against one durable JetStream consumer, with exact accounting.

A message from a pull consumer arrives with its own subject, not the request's reply subject,
so each request gets its own inbox subscription: every arriving message and every status
(408 expired, 404/409 ended) is matched to the request it answers. That tells, at any moment,
how many messages may still arrive, so a consumer never asks for more than its prefetch
allows. Closing drains the subscriptions, so messages the server sent before it saw the
unsubscribe are still handed over (and can be given back) instead of being dropped and
redelivered later with a raised delivery count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chute_nats._connection import Connection

log = logging.getLogger("chute.nats")

# A waiting request costs the server nothing; long ones mean an idle consumer is quiet.
EXPIRES = 30.0
# If the expiry notice never comes (connection lost), forget the request this much later.
_GRACE = 5.0


class Signal:
    """A wake-up for one waiting task; a ``set()`` that comes before ``wait()`` is kept."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float = math.inf) -> None:
        if timeout > 0:
            try:
                async with asyncio.timeout(None if math.isinf(timeout) else timeout):
                    await self._event.wait()
            except TimeoutError:
                pass
        self._event.clear()


@dataclass(slots=True)
class _Request:
    batch: int
    deadline: float
    sub: Subscription | None = None
    received: int = 0
    # Open: more messages may come and count against the prefetch. A request stops being
    # open when filled, when the server ends it, or when given up for lost.
    open: bool = True


class Puller:
    """Issues pull requests and hands arriving messages to ``on_message``.

    Args:
        conn: the connection.
        consumer: the durable consumer's name.
        on_message: called with each message and whether it answers a request still open
            (``False`` for a request already given up, after a reconnect).
        wake: set whenever a message arrives or a request ends.
    """

    def __init__(
        self,
        conn: Connection,
        consumer: str,
        on_message: Callable[[Msg, bool], None],
        wake: Signal,
    ) -> None:
        self.conn = conn
        self.consumer = consumer
        self.on_message = on_message
        self.wake = wake
        # Set when the consumer may be missing on the server: check, and create it again.
        self.gone = False
        self._requests: dict[int, _Request] = {}
        self._count = 0
        self._inbox = ""
        conn.reconnected.add(self.forget)

    async def start(self) -> None:
        self._inbox = self.conn.nc.new_inbox()

    def outstanding(self) -> int:
        """Messages that open requests may still deliver."""
        now = time.monotonic()
        total = 0
        for request in self._requests.values():
            if request.open and request.deadline <= now:
                # The server never answered: the consumer may have been deleted meanwhile
                # (a request to a missing consumer gets no answer at all).
                request.open = False
                self.gone = True
            if request.open:
                total += request.batch - request.received
        return total

    def next_deadline(self) -> float:
        return min((r.deadline for r in self._requests.values() if r.open), default=math.inf)

    def forget(self) -> None:
        """Give up every open request (the connection was lost; they may be gone)."""
        for request in self._requests.values():
            request.open = False
        self.wake.set()

    async def _tidy(self) -> None:
        """Unsubscribe from requests that can deliver nothing more."""
        now = time.monotonic()
        for token, request in list(self._requests.items()):
            if request.received >= request.batch or request.deadline <= now:
                del self._requests[token]
                if request.sub is not None:
                    await request.sub.unsubscribe()

    async def request(self, batch: int) -> None:
        await self._tidy()
        self._count += 1
        token = self._count
        reply = f"{self._inbox}.{token}"
        request = self._requests[token] = _Request(batch, time.monotonic() + EXPIRES + _GRACE)

        async def arrived(msg: Msg) -> None:
            self._arrived(request, msg)

        nc = self.conn.nc
        try:
            request.sub = await nc.subscribe(reply, cb=arrived)  # pyright: ignore[reportUnknownMemberType]
            body = json.dumps({"batch": batch, "expires": round(EXPIRES * 1e9)}).encode()
            settings = self.conn.settings
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{settings.stream}.{self.consumer}", body, reply=reply
            )
        except BaseException:
            request.open = False
            raise

    def _arrived(self, request: _Request, msg: Msg) -> None:
        if not msg.reply:
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status == "100":
                return
            # The server ended the request: nothing more comes for it.
            request.open = False
            request.deadline = 0
            if status not in ("404", "408"):
                description = headers.get("Description", "")
                log.warning("NATS consumer %s: pull request ended: %s %s",
                            self.consumer, status, description)  # fmt: skip
                if "Deleted" in description:
                    self.gone = True
            self.wake.set()
            return
        expected = request.open
        request.received += 1
        if request.received >= request.batch:
            request.open = False
        self.on_message(msg, expected)
        self.wake.set()

    async def close(self) -> None:
        """Stop; messages already on their way still reach ``on_message``."""
        self.conn.reconnected.discard(self.forget)
        requests = list(self._requests.values())
        self._requests.clear()
        for request in requests:
            request.open = False
            sub = request.sub
            if sub is None:
                continue
            try:
                if self.conn.connected and request.received < request.batch:
                    # Shielded: a cancelled drain would cancel its flush (see Connection.flush).
                    await asyncio.shield(sub.drain())
                else:
                    await sub.unsubscribe()
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("NATS consumer %s: could not drain: %s", self.consumer, exc)
