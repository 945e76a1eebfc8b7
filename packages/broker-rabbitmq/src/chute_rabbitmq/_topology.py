"""What chute keeps on the server for a queue: the queue itself and its delay ladder.

For a queue ``q`` there is

- ``q``: a durable quorum queue. The server counts its deliveries (``x-delivery-count``),
  so a message's attempt survives consumer crashes.
- ``q.delay.00`` … ``q.delay.30``, created on demand, lowest first: durable quorum queues
  where a message waits ``2**k`` milliseconds (``x-message-ttl``), then is dead-lettered, at
  least once, to the exchange of the next lower level.
- the topic exchanges ``chute.delay.00`` … ``chute.delay.30`` and ``chute.delay.deliver``,
  shared by all queues.

A delayed message's routing key spells its delay in binary, most significant bit first, then a
digest of the target queue. Exchange ``k`` routes it to ``q.delay.k`` when bit ``k`` is set
and on to exchange ``k - 1`` when it is not; ``chute.delay.deliver`` routes it to ``q``. Every
level queue holds messages for one fixed time, so first in is first out and delays of any mix
come out in order of due time, exact to the millisecond and never early. Routing keeps the
original key across dead-lettering, so a message needs no help from any client on its way.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import aiormq.exceptions

from chute_rabbitmq._link import Channel, Link

LEVELS = 31
MAX_DELAY_MS = (1 << LEVELS) - 1
DELIVER_EXCHANGE = "chute.delay.deliver"
QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}

# How long a "this level does not exist" answer is trusted before asking the server again.
_MISS_TTL = 1.0


def level_queue(queue: str, level: int) -> str:
    return f"{queue}.delay.{level:02d}"


def level_exchange(level: int) -> str:
    return DELIVER_EXCHANGE if level < 0 else f"chute.delay.{level:02d}"


def _digest(queue: str) -> str:
    # Queue names may contain "*" and "#" or be long; a digest keeps routing keys literal.
    return hashlib.blake2b(queue.encode(), digest_size=8).hexdigest()


def delay_route(queue: str, ms: int) -> tuple[str, str]:
    """The exchange and routing key that deliver a message to ``queue`` after ``ms`` ms."""
    bits = format(ms, f"0{LEVELS}b")
    return level_exchange(ms.bit_length() - 1), ".".join(bits) + "." + _digest(queue)


def _level_pattern(queue: str, level: int) -> str:
    words = ["*"] * LEVELS
    words[LEVELS - 1 - level] = "1"
    return ".".join(words) + "." + _digest(queue)


def _pass_pattern(level: int) -> str:
    return ".".join(["*"] * (LEVELS - 1 - level) + ["0", "#"])


def _level_arguments(level: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": 1 << level,
        "x-dead-letter-exchange": level_exchange(level - 1),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
    }


class Topology:
    """Declares queues and ladders once per broker, and counts or purges what they hold."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._queues: set[str] = set()
        self._levels: dict[str, int] = {}  # queue -> ladder levels known to exist (a prefix)
        self._exchanges = 0  # shared level exchanges known to exist (a prefix)
        self._missed: dict[str, float] = {}  # queue -> when the level above was last missing
        self._probe: Channel | None = None

    def forget(self, queue: str) -> None:
        """Drop what is cached about ``queue`` (it may have been deleted meanwhile)."""
        self._queues.discard(queue)
        self._levels.pop(queue, None)
        self._missed.pop(queue, None)

    async def declare(self, queue: str) -> None:
        if queue in self._queues:
            return
        channel = await self.link.admin()
        with self.link.errors(queue, "declaring the queue"):
            await channel.queue_declare(queue, durable=True, arguments=QUEUE_ARGUMENTS)
        self._queues.add(queue)

    async def ladder(self, queue: str, top: int) -> None:
        """Make sure levels ``0..top`` of ``queue``'s ladder exist, lowest first."""
        have = self._levels.get(queue, 0)
        if have > top:
            return
        await self.declare(queue)
        channel = await self.link.admin()
        with self.link.errors(queue, "declaring the delay queues"):
            if self._exchanges == 0:
                await channel.exchange_declare(
                    DELIVER_EXCHANGE, exchange_type="topic", durable=True
                )
            for level in range(self._exchanges, top + 1):
                await channel.exchange_declare(
                    level_exchange(level), exchange_type="topic", durable=True
                )
                await channel.exchange_bind(
                    destination=level_exchange(level - 1),
                    source=level_exchange(level),
                    routing_key=_pass_pattern(level),
                )
                self._exchanges = level + 1
            if have == 0:
                await channel.queue_bind(queue, DELIVER_EXCHANGE, "*." * LEVELS + _digest(queue))
            for level in range(have, top + 1):
                name = level_queue(queue, level)
                await channel.queue_declare(name, durable=True, arguments=_level_arguments(level))
                await channel.queue_bind(name, level_exchange(level), _level_pattern(queue, level))
                self._levels[queue] = level + 1

    async def _probe_channel(self) -> Channel:
        channel = self._probe
        if channel is None or channel.is_closed or not self.link.alive():
            channel = self._probe = await self.link.open_channel()
        return channel

    async def _count(self, name: str, *, purge: bool) -> int | None:
        """Ready messages in ``name`` (purging them if asked), or ``None`` if it does not exist.

        Runs on its own channel: the server closes a channel that touches a missing queue.
        """
        channel = await self._probe_channel()
        with self.link.errors(name, "purging" if purge else "counting messages"):
            try:
                if purge:
                    return (await channel.queue_purge(name)).message_count or 0
                return (await channel.queue_declare(name, passive=True)).message_count or 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                return None

    async def consumers(self, queue: str) -> int | None:
        """Consumers subscribed to ``queue``, or ``None`` if it does not exist."""
        channel = await self._probe_channel()
        with self.link.errors(queue, "checking the queue"):
            try:
                return (await channel.queue_declare(queue, passive=True)).consumer_count or 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                return None

    async def ladder_counts(self, queue: str, *, purge: bool = False) -> list[int]:
        """What each existing level of ``queue``'s ladder holds (emptying them if asked)."""
        counts: list[int] = []
        known = self._levels.get(queue, 0)
        recently_missed = time.monotonic() - self._missed.get(queue, -_MISS_TTL) < _MISS_TTL
        level = 0
        while level < LEVELS:
            if level >= known and recently_missed:
                break
            count = await self._count(level_queue(queue, level), purge=purge)
            if count is None:
                if level < known:  # deleted behind our back: start over next time
                    self.forget(queue)
                self._missed[queue] = time.monotonic()
                break
            counts.append(count)
            level += 1
        self._levels[queue] = max(self._levels.get(queue, 0), level)
        return counts

    async def ready(self, queue: str, *, purge: bool = False) -> int:
        """Ready messages in ``queue`` itself (emptying it if asked), declaring it if needed."""
        channel = await self.link.admin()
        with self.link.errors(queue, "purging" if purge else "counting messages"):
            ok = await channel.queue_declare(queue, durable=True, arguments=QUEUE_ARGUMENTS)
            self._queues.add(queue)
            if purge:
                return (await channel.queue_purge(queue)).message_count or 0
            return ok.message_count or 0
