"""The embedded broker: one SQLite file, shared by any number of processes on one machine.

Every message is a row. A lease is a random token written on the row together with the lease's
expiry in ``available_at``; an expired lease therefore makes the row claimable again by the
same query that finds ready messages, with no reaper process. Acks, retries and extensions
match on ``(id, token)``, so a consumer whose lease lapsed can never touch the copy now leased
to somebody else. The file runs in WAL mode with ``synchronous=NORMAL``: a committed message
survives the crash of any process, though not necessarily a power cut.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import anyio

from chute._sqlite import SqliteFile, path_from_url
from chute._waker import Waker
from chute.broker import Ack, Capabilities, Outgoing, QueueStats, dead_queue
from chute.stores.sqlite import SqliteStore

__all__ = ["SqliteBroker"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chute_messages (
    id           INTEGER PRIMARY KEY,
    queue        TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    available_at REAL    NOT NULL,
    deliveries   INTEGER NOT NULL DEFAULT 0,
    token        INTEGER
);
CREATE INDEX IF NOT EXISTS chute_messages_due ON chute_messages (queue, available_at, id);
"""

_CLAIM_LEASED = """
UPDATE chute_messages SET token = ?, available_at = ?, deliveries = deliveries + 1
WHERE id IN (
    SELECT id FROM chute_messages WHERE queue = ? AND available_at <= ?
    ORDER BY available_at, id LIMIT ?
)
RETURNING id, body, deliveries
"""

_CLAIM_REMOVE = """
DELETE FROM chute_messages
WHERE id IN (
    SELECT id FROM chute_messages WHERE queue = ? AND available_at <= ?
    ORDER BY available_at, id LIMIT ?
)
RETURNING id, body, deliveries + 1
"""

_INSERT = "INSERT INTO chute_messages (queue, body, available_at, deliveries) VALUES (?, ?, ?, ?)"

# Settlement statements, keyed by operation. Each matches on (id, token): a stale one is a no-op.
_SETTLE = {
    "ack": "DELETE FROM chute_messages WHERE id = ?2 AND token = ?3",
    "retry": "UPDATE chute_messages SET token = NULL, available_at = ?1 "
    "WHERE id = ?2 AND token = ?3",
    "release": "UPDATE chute_messages SET token = NULL, available_at = ?1, "
    "deliveries = deliveries - 1 WHERE id = ?2 AND token = ?3",
    "extend": "UPDATE chute_messages SET available_at = ?1 "
    "WHERE id = ?2 AND token = ?3 AND available_at > ?4",
}

# An idle consumer looks for new rows this often, backing off from the first to the second
# value while nothing arrives. Publishers in the same process wake it at once.
_POLL_MIN = 0.002
_POLL_MAX = 0.05


class SqliteBroker:
    """A broker on a local SQLite file; both ack modes, native delays, leases.

    Args:
        url: ``sqlite:///relative/path.sqlite3`` or ``sqlite:////absolute/path.sqlite3``.
        path: the file, instead of a URL.
    """

    # The statements that implement leases, as class attributes so a test can build a broker
    # with one deliberately broken and watch the conformance suite catch it.
    _claim_leased_sql: ClassVar[str] = _CLAIM_LEASED
    _settle_sql: ClassVar[Mapping[str, str]] = _SETTLE

    def __init__(self, url: str | None = None, *, path: str | Path | None = None) -> None:
        if path is None:
            path = path_from_url(url or "sqlite:///chute.sqlite3")
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self._file = SqliteFile(self.path, _SCHEMA, "broker")
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flushing = False
        self._wakers: dict[str, Waker] = {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            acks=frozenset({Ack.ON_RECEIPT, Ack.ON_COMPLETION}),
            max_delay=None,
            max_body=None,
            ordered=True,
            persistent=True,
            shared=True,
        )

    def __repr__(self) -> str:
        return f"SqliteBroker({str(self.path)!r})"

    async def __aenter__(self) -> Self:
        await self._file.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._flush()
        await self._file.close()

    def default_store(self) -> SqliteStore:
        """The store that shares this broker's file, for results, unique keys and cron."""
        return SqliteStore(path=self.path)

    async def _run(self, queue: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._file.run(f"queue {queue!r}", fn)

    def _waker(self, queue: str) -> Waker:
        waker = self._wakers.get(queue)
        if waker is None:
            waker = self._wakers[queue] = Waker()
        return waker

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        now = time.time()
        rows = [(queue, m.body, now + m.delay, 0) for m in messages]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT, rows)

        await self._run(queue, insert)
        self._waker(queue).notify()

    def _take_pending(self) -> list[tuple[str, tuple[Any, ...]]]:
        # Called on the event loop thread only, so no append can slip between read and reset.
        pending, self._pending = self._pending, []
        return pending

    def _apply(self, conn: sqlite3.Connection, pending: list[tuple[str, tuple[Any, ...]]]) -> None:
        for op, params in pending:
            if op == "insert":
                conn.execute(_INSERT, params)
            else:
                conn.execute(self._settle_sql[op], params)

    async def _flush(self) -> None:
        """Write pending settlements. Concurrent callers coalesce into one transaction."""
        if self._flushing or not self._file.is_open:
            return
        self._flushing = True
        try:
            while self._pending:
                pending = self._take_pending()
                await self._run("(settlements)", functools.partial(self._apply, pending=pending))
        finally:
            self._flushing = False

    async def _settle(self, queue: str, op: str, params: tuple[Any, ...], *, now: bool) -> None:
        self._pending.append((op, params))
        if now:
            await self._flush()
            if op != "ack":
                self._waker(queue).notify()

    @asynccontextmanager
    async def consume(
        self, queue: str, *, ack: Ack, prefetch: int, lease: float
    ) -> AsyncGenerator[AsyncIterator[_SqliteDelivery], None]:
        consumer = _Consumer(self, queue, ack, max(1, prefetch), lease)
        try:
            yield consumer.deliveries()
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.close()

    async def stats(self, queue: str) -> QueueStats:
        now = time.time()

        def count(conn: sqlite3.Connection) -> QueueStats:
            ready, delayed, in_flight = conn.execute(
                "SELECT"
                " coalesce(sum(available_at <= ?1), 0),"
                " coalesce(sum(available_at > ?1 AND token IS NULL), 0),"
                " coalesce(sum(available_at > ?1 AND token IS NOT NULL), 0)"
                " FROM chute_messages WHERE queue = ?2",
                (now, queue),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT count(*) FROM chute_messages WHERE queue = ?", (dead_queue(queue),)
            ).fetchone()
            return QueueStats(ready, delayed, in_flight, dead)

        await self._flush()
        return await self._run(queue, count)

    async def purge(self, queue: str) -> int:
        now = time.time()

        def delete(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM chute_messages"
                " WHERE queue = ? AND (token IS NULL OR available_at <= ?)",
                (queue, now),
            )
            return cursor.rowcount

        await self._flush()
        return await self._run(queue, delete)


class _Consumer:
    def __init__(
        self, broker: SqliteBroker, queue: str, ack: Ack, prefetch: int, lease: float
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.ack = ack
        self.prefetch = prefetch
        self.lease = lease
        self.unsettled = 0
        self.buffer: list[_SqliteDelivery] = []
        self.settled = Waker()
        self._tokens = itertools.count(secrets.randbits(40) << 20)

    def _claim(
        self, conn: sqlite3.Connection, pending: list[tuple[str, tuple[Any, ...]]], limit: int
    ) -> list[tuple[int, bytes, int, int]]:
        self.broker._apply(conn, pending)  # pyright: ignore[reportPrivateUsage]
        now = time.time()
        if self.ack is Ack.ON_RECEIPT:
            rows = conn.execute(_CLAIM_REMOVE, (self.queue, now, limit)).fetchall()
            token = 0
        else:
            token = next(self._tokens)
            rows = conn.execute(
                self.broker._claim_leased_sql,  # pyright: ignore[reportPrivateUsage]
                (token, now + self.lease, self.queue, now, limit),
            ).fetchall()
        rows.sort()
        return [(msg_id, body, deliveries, token) for msg_id, body, deliveries in rows]

    async def deliveries(self) -> AsyncGenerator[_SqliteDelivery, None]:
        while True:
            if not self.buffer:
                await self._fill()
            yield self.buffer.pop(0)

    async def _fill(self) -> None:
        waker = self.broker._waker(self.queue)  # pyright: ignore[reportPrivateUsage]
        poll = _POLL_MIN
        while True:
            free = self.prefetch - self.unsettled
            if free <= 0:
                await self.settled.wait()
                continue
            pending = self.broker._take_pending()  # pyright: ignore[reportPrivateUsage]
            rows = await self.broker._run(  # pyright: ignore[reportPrivateUsage]
                self.queue, functools.partial(self._claim, pending=pending, limit=free)
            )
            if rows:
                self.unsettled += len(rows)
                self.buffer.extend(_SqliteDelivery(self, *row) for row in rows)
                return
            woken = await waker.wait(poll)
            poll = _POLL_MIN if woken else min(poll * 2, _POLL_MAX)

    async def close(self) -> None:
        buffered, self.buffer = self.buffer, []
        for delivery in buffered:
            delivery.settle_later("release")
        await self.broker._flush()  # pyright: ignore[reportPrivateUsage]
        if buffered:
            self.broker._waker(self.queue).notify()  # pyright: ignore[reportPrivateUsage]


class _SqliteDelivery:
    __slots__ = ("_consumer", "_done", "_token", "attempt", "body", "id", "row")

    def __init__(
        self, consumer: _Consumer, row: int, body: bytes, deliveries: int, token: int
    ) -> None:
        self._consumer = consumer
        self._token = token
        self._done = False
        self.row = row
        self.id = str(row)
        self.body = body
        self.attempt = deliveries

    def settle_later(self, op: str, delay: float = 0.0) -> bool:
        """Queue the settlement ``op``; ``False`` if this delivery was already settled."""
        if self._done:
            return False
        self._done = True
        consumer = self._consumer
        consumer.unsettled -= 1
        consumer.settled.notify()
        broker = consumer.broker
        if consumer.ack is Ack.ON_RECEIPT:
            if op in ("retry", "release"):
                deliveries = self.attempt if op == "retry" else self.attempt - 1
                broker._pending.append(  # pyright: ignore[reportPrivateUsage]
                    ("insert", (consumer.queue, self.body, time.time() + delay, deliveries))
                )
        else:
            broker._pending.append(  # pyright: ignore[reportPrivateUsage]
                (op, (time.time() + delay, self.row, self._token))
            )
        return True

    async def ack(self) -> None:
        if self.settle_later("ack"):
            await self._consumer.broker._flush()  # pyright: ignore[reportPrivateUsage]

    async def retry(self, delay: float) -> None:
        if self.settle_later("retry", delay):
            await self._flush_and_wake()

    async def release(self) -> None:
        if self.settle_later("release"):
            await self._flush_and_wake()

    async def _flush_and_wake(self) -> None:
        broker = self._consumer.broker
        await broker._flush()  # pyright: ignore[reportPrivateUsage]
        broker._waker(self._consumer.queue).notify()  # pyright: ignore[reportPrivateUsage]

    async def extend(self, lease: float) -> None:
        if self._done or self._consumer.ack is Ack.ON_RECEIPT:
            return
        now = time.time()
        broker = self._consumer.broker
        broker._pending.append(  # pyright: ignore[reportPrivateUsage]
            ("extend", (now + lease, self.row, self._token, now))
        )
        await broker._flush()  # pyright: ignore[reportPrivateUsage]
