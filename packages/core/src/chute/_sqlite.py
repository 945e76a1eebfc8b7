"""One SQLite file shared by the SQLite broker and store: connection, transactions, threads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from chute.errors import BrokerError, BrokerUnavailable

_T = TypeVar("_T")


def path_from_url(url: str) -> Path:
    """``sqlite:///relative`` and ``sqlite:////absolute``, as SQLAlchemy spells them."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url.removeprefix("sqlite://")
    if rest.startswith("/"):
        rest = rest[1:]
    return Path(rest or "chute.sqlite3")


class SqliteFile:
    """A connection to one SQLite file, used from worker threads one call at a time.

    WAL mode, ``synchronous=NORMAL``: a committed write survives the crash of any process.
    """

    def __init__(self, path: Path, schema: str, what: str) -> None:
        self.path = path
        self.schema = schema
        self.what = what
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await anyio.to_thread.run_sync(self._connect)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close)

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self.schema)
        except (sqlite3.Error, OSError) as exc:
            raise BrokerUnavailable(
                f"cannot open SQLite {self.what} at {self.path}: {exc}"
            ) from exc
        return conn

    async def run(self, where: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one write transaction, in a worker thread.

        Raises:
            BrokerError: SQLite failed; the message names the file and ``where``.
        """
        conn = self._conn
        if conn is None:
            raise BrokerError(f"SQLite {self.what} at {self.path} is not open (use `async with`)")

        def transaction() -> _T:
            with self._lock:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    return result
                except sqlite3.Error as exc:
                    raise BrokerError(f"SQLite {self.what} at {self.path}, {where}: {exc}") from exc

        return await anyio.to_thread.run_sync(transaction)
