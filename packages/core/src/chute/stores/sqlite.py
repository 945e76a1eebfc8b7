"""The store on the embedded SQLite file, shared by every process on the machine."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from chute._sqlite import SqliteFile, path_from_url
from chute._waker import Waker

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chute_kv (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS chute_kv_expiry ON chute_kv (expires_at);
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"

# Expired rows are invisible at once; every this many writes they are also deleted.
_SWEEP_EVERY = 500

# wait() polls other processes' writes this often, backing off from the first to the second.
_POLL_MIN = 0.005
_POLL_MAX = 0.1


class SqliteStore:
    """Keys with expiry in a ``chute_kv`` table, in the same file as the SQLite broker.

    Args:
        url: ``sqlite:///relative.sqlite3`` or ``sqlite:////absolute.sqlite3``.
        path: the file, instead of a URL.
    """

    def __init__(self, url: str | None = None, *, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else path_from_url(url or "sqlite://")
        self.url = url or f"sqlite:///{self.path}"
        self._file = SqliteFile(self.path, _SCHEMA, "store")
        self._writes = 0
        self._changed = Waker()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def __aenter__(self) -> Self:
        await self._file.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._file.close()

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else time.time() + ttl

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            conn.execute("DELETE FROM chute_kv WHERE expires_at <= ?", (now,))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = self._expiry(ttl)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO chute_kv (key, value, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " expires_at = excluded.expires_at",
                (key, value, expires),
            )
            self._sweep(conn, time.time())

        await self._file.run(f"key {key!r}", write)
        self._changed.notify()

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires = self._expiry(ttl)

        def write(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute("DELETE FROM chute_kv WHERE key = ? AND NOT " + _LIVE, (key, now))
            cursor = conn.execute(
                "INSERT OR IGNORE INTO chute_kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires),
            )
            self._sweep(conn, now)
            return cursor.rowcount == 1

        added = await self._file.run(f"key {key!r}", write)
        if added:
            self._changed.notify()
        return added

    async def get(self, key: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT value FROM chute_kv WHERE key = ? AND " + _LIVE, (key, time.time())
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._file.run(f"key {key!r}", read)

    async def delete(self, key: str, *, value: bytes | None = None) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            now = time.time()
            if value is None:
                cursor = conn.execute("DELETE FROM chute_kv WHERE key = ? AND " + _LIVE, (key, now))
            else:
                cursor = conn.execute(
                    "DELETE FROM chute_kv WHERE key = ? AND value = ? AND " + _LIVE,
                    (key, value, now),
                )
            return cursor.rowcount == 1

        return await self._file.run(f"key {key!r}", remove)

    async def wait(self, key: str, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        poll = _POLL_MIN
        while (value := await self.get(key)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # Writes from this process wake us at once; other processes' are found by polling.
            woken = await self._changed.wait(min(poll, remaining))
            poll = _POLL_MIN if woken else min(poll * 2, _POLL_MAX)
        return value
