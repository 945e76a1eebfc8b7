"""One connection that carries a broker's publishes, pipelined.

A pooled redis-py call costs about twice the loopback round trip in Python (pool checkout,
parser, instrumentation), which single-job enqueues feel directly. Here every publish of a
broker writes its command on one shared connection and waits for its own reply; replies come
back in the order the commands were written, so concurrent enqueues overlap instead of
queueing for pooled connections.

The connection is opened by redis-py (TLS, AUTH, SELECT, CLIENT SETNAME all as configured),
then its transport is handed to a small protocol that parses the replies (RESP2 or RESP3,
whichever the connection negotiated) as they arrive.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex

from chute_redis._client import Arg, pack

__all__ = ["Publisher"]


class _Incomplete(Exception):
    pass


def _error(message: str) -> rex.ResponseError:
    # The error classes redis-py's own parser would raise for the replies chute handles.
    if message.startswith("NOSCRIPT"):
        return rex.NoScriptError(message)
    if message.startswith("OOM"):
        return rex.OutOfMemoryError(message)
    return rex.ResponseError(message)


def _line(buf: bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return bytes(buf[pos:end]), end + 2


_PUSH = object()
"""What a RESP3 push message parses to: out-of-band, answering no command."""


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 or RESP3 reply starting at ``pos``: the value and the position after it."""
    kind = buf[pos]
    line, pos = _line(buf, pos + 1)
    if kind in (0x24, 0x21, 0x3D):  # '$' bulk string, '!' bulk error, '=' verbatim string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        data = bytes(buf[pos : pos + size])
        pos += size + 2
        if kind == 0x21:
            return _error(data.decode(errors="replace")), pos
        return (data[4:] if kind == 0x3D else data), pos
    if kind == 0x3A or kind == 0x28:  # ':' integer, '(' big number
        return int(line), pos
    if kind == 0x2B:  # '+'
        return line, pos
    if kind == 0x2D:  # '-'
        return _error(line.decode(errors="replace")), pos
    if kind == 0x5F:  # '_' null
        return None, pos
    if kind == 0x23:  # '#' boolean
        return line == b"t", pos
    if kind == 0x2C:  # ',' double
        return float(line), pos
    if kind in (0x2A, 0x7E, 0x3E, 0x25, 0x7C):  # '*' array, '~' set, '>' push, '%' map, '|'
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Any] = []
        for _ in range(count * 2 if kind in (0x25, 0x7C) else count):
            item, pos = _parse(buf, pos)
            items.append(item)
        if kind == 0x25:
            return dict(zip(items[::2], items[1::2], strict=True)), pos
        if kind == 0x7C:  # attributes describe the reply that follows them
            return _parse(buf, pos)
        return (_PUSH if kind == 0x3E else items), pos
    raise rex.InvalidResponse(f"Protocol error, got {chr(kind)!r} as reply type byte")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lost: BaseException | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                value, pos = _parse(buf, pos)
                if value is _PUSH:
                    continue
                future = self.waiting.popleft()
                if future.done():  # its caller gave up waiting
                    continue
                if isinstance(value, rex.ResponseError):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        except _Incomplete:
            pass
        except (rex.InvalidResponse, ValueError, IndexError) as exc:
            # A reply that cannot be parsed leaves no way to match the rest: drop the line.
            if self.transport is not None:
                self.transport.abort()
            self.connection_lost(rex.ConnectionError(f"bad reply from Redis: {exc}"))
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = exc or rex.ConnectionError("Connection closed by server.")
        self._writable.set()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(rex.ConnectionError(str(self.lost)))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def writable(self) -> None:
        await self._writable.wait()


class Publisher:
    """Commands on one pipelined connection, opened on first use and after a loss.

    Args:
        pool: the broker's redis-py pool, whose settings open the connection.
        timeout: seconds a reply may take before the connection is treated as lost.
    """

    def __init__(self, pool: aioredis.ConnectionPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def call(self, args: Sequence[Arg]) -> Any:
        """Send one command and return its reply.

        A reply that does not come, or a connection that drops before it comes, raises
        ``redis.ConnectionError`` or ``TimeoutError``: the command may or may not have run,
        so it is never sent again here.
        """
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._open()
        if not protocol._writable.is_set():  # pyright: ignore[reportPrivateUsage]
            await protocol.writable()
            if protocol.lost is not None:
                raise rex.ConnectionError(str(protocol.lost))
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.waiting.append(future)
        protocol.transport.write(pack(args))
        if self._timeout is None:
            return await future
        timer = loop.call_later(self._timeout, self._expire, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, protocol: _Protocol, future: asyncio.Future[Any]) -> None:
        if future.done():
            return
        # A reply this late means the connection is stuck; every reply after it would be too.
        if protocol.transport is not None:
            protocol.transport.abort()
        protocol.connection_lost(rex.TimeoutError("Timeout reading from Redis"))

    async def _open(self) -> _Protocol:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            current = self._protocol
            if current is not None and current.lost is None:
                return current
            connection: Any = self._pool.make_connection()
            await connection.connect()
            writer: asyncio.StreamWriter | None = getattr(connection, "_writer", None)
            if writer is None:  # a redis-py that keeps its stream elsewhere
                await connection.disconnect()
                raise rex.ConnectionError(
                    "this redis-py version keeps no stream writer on its connections; "
                    "chute-redis cannot pipeline publishes with it"
                )
            transport: Any = writer.transport
            protocol = _Protocol()
            protocol.transport = transport
            # asyncio closes a stream writer's transport when the writer is collected.
            protocol.writer = writer
            transport.set_protocol(protocol)
            # The transport is the protocol's now; the connection object must not close it.
            connection._writer = connection._reader = None
            self._protocol = protocol
            return protocol

    def close(self) -> None:
        """Close the connection; calls still waiting fail as if it had dropped."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            protocol.connection_lost(rex.ConnectionError("publisher closed"))
