"""Leases longer than the consumer's ack wait, kept alive with in-progress acks.

A JetStream consumer has one ack wait, fixed when it is created, while ``consume()`` and
``extend()`` may ask for any lease. The server's ack wait is therefore the lease's unit:
while a held delivery's lease outlasts what the server has granted, this keeper sends an
in-progress ack (``+WPI``) before the server's grant runs out. A process that stops (killed,
paused, cut off) stops sending them, and the server redelivers within one ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from chute.errors import BrokerError
from chute_nats._settings import Settings

log = logging.getLogger("chute.nats")


class Leased(Protocol):
    """A delivery whose lease this keeper may extend on the server."""

    @property
    def id(self) -> str: ...

    @property
    def settled(self) -> bool: ...

    lease_until: float
    deadline: float

    def stale(self) -> bool: ...

    async def progress(self) -> None: ...


class LeaseKeeper:
    """Sends in-progress acks for held deliveries whose lease outlasts the server's grant."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._held: dict[int, Leased] = {}
        self._task: asyncio.Task[None] | None = None

    def track(self, delivery: Leased) -> None:
        self._held[id(delivery)] = delivery

    def untrack(self, delivery: Leased) -> None:
        self._held.pop(id(delivery), None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        ack_wait = self.settings.ack_wait
        while True:
            await asyncio.sleep(ack_wait / 5)
            now = time.monotonic()
            for key, delivery in list(self._held.items()):
                if delivery.settled or delivery.stale():
                    # A lapsed lease is not revived: another consumer may hold the message.
                    del self._held[key]
                elif delivery.lease_until > delivery.deadline and delivery.deadline - now < (
                    ack_wait / 2
                ):
                    try:
                        await delivery.progress()
                    except BrokerError as exc:
                        log.warning("could not extend the lease of message %s: %s",
                                    delivery.id, exc)  # fmt: skip
