"""One AMQP connection per broker, opened again on demand after a loss; driver errors translated.

Every operation asks the link for a live connection or channel. After a loss the first caller
reconnects and the others wait for it, so a cut never multiplies connection attempts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Generator
from contextlib import contextmanager

import aio_pika
import aio_pika.abc
import aiormq
import aiormq.abc
import aiormq.exceptions
import anyio

from chute.errors import BrokerConfigConflict, BrokerError, BrokerUnavailable
from chute.plugins import redact_url

log = logging.getLogger("chute.rabbitmq")

Channel = aiormq.abc.AbstractChannel

_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)'")

# Exceptions meaning "the connection or channel is gone": the operation may succeed again once
# the link is reopened.
_LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def server_text(exc: BaseException) -> str:
    """The server's reply text for an AMQP error, else the exception's own text."""
    if isinstance(exc, aiormq.exceptions.AMQPError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or type(exc).__name__


def is_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection or the channel is gone (worth reopening)."""
    return isinstance(exc, _LOST)


class Link:
    """The broker's connection and its two shared channels (administration, publishing).

    Args:
        url: the AMQP URL handed to aio-pika (chute's own options already removed).
        connect_timeout: seconds one connection attempt may take.
    """

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        self.url = url
        self.shown = redact_url(url)
        self.connect_timeout = connect_timeout
        self.name = f"chute-{uuid.uuid4().hex[:12]}"
        self.version: tuple[int, ...] = ()
        self.version_text = "unknown"
        self.closed = False
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self._admin: Channel | None = None
        self._publisher: Channel | None = None

    def alive(self) -> bool:
        """Whether the connection is open right now (no reconnect is attempted)."""
        return self._conn is not None and _is_open(self._conn)

    def current(self) -> aiormq.abc.AbstractConnection | None:
        """The driver's connection in use now, if any (for tests that cut it)."""
        conn = self._conn
        return None if conn is None or conn.transport is None else conn.transport.connection

    @contextmanager
    def errors(self, queue: str | None, action: str) -> Generator[None]:
        """Translate driver errors raised inside into chute's, naming the URL and the queue."""
        where = f"RabbitMQ at {self.shown}" + (f", queue {queue!r}" if queue is not None else "")
        try:
            yield
        except BrokerError:
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            # Not a cancellation of ours: the driver fails what was waiting on a channel or
            # connection the server closed with CancelledError.
            raise BrokerUnavailable(
                f"{where}: {action} failed, connection lost: {server_text(exc)}"
            ) from exc
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            text = server_text(exc)
            found = _INEQUIVALENT.search(text)
            if found is None:
                raise BrokerError(f"{where}: {action} failed: {text}") from exc
            raise BrokerConfigConflict(
                f"{where}: {action} failed: the queue already exists with a different "
                f"{found[1]!r} than chute declares (server says: {text}). RabbitMQ cannot change "
                "a queue's arguments in place: delete the queue (losing its messages) or use "
                "another queue name."
            ) from exc
        except _LOST as exc:
            raise BrokerUnavailable(
                f"{where}: {action} failed, connection lost: {server_text(exc)}"
            ) from exc
        except aiormq.exceptions.AMQPError as exc:
            raise BrokerError(f"{where}: {action} failed: {server_text(exc)}") from exc

    async def connection(self) -> aio_pika.abc.AbstractConnection:
        """The open connection, connecting (once, for every concurrent caller) if needed."""
        conn = self._conn
        if conn is not None and _is_open(conn):
            return conn
        async with self._lock:
            conn = self._conn
            if conn is not None and _is_open(conn):
                return conn
            if self.closed:
                raise BrokerError(f"the RabbitMQ broker for {self.shown} is closed")
            self._admin = self._publisher = self._conn = None
            if conn is not None:
                await _close_quietly(conn, self.connect_timeout)
            self._conn = conn = await self._connect()
            return conn

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        try:
            with anyio.fail_after(self.connect_timeout):
                conn = await aio_pika.connect(
                    self.url, client_properties={"connection_name": self.name}
                )
        except (TimeoutError, *_LOST, aiormq.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {self.shown}: {server_text(exc)}"
            ) from exc
        if conn.transport is not None:
            properties = conn.transport.connection.server_properties
            self.version_text = str(properties.get("version", "unknown"))
            self.version = parse_version(self.version_text)
        log.debug("connected to RabbitMQ %s at %s", self.version_text, self.shown)
        return conn

    async def open_channel(self, *, confirms: bool = False) -> Channel:
        """A new channel on the live connection (reconnecting first if needed)."""
        conn = await self.connection()
        with self.errors(None, "opening a channel"):
            channel = await conn.channel(publisher_confirms=confirms)
            return await channel.get_underlay_channel()

    async def admin(self) -> Channel:
        """The shared channel for declarations, counts and purges."""
        channel = self._admin
        if channel is None or channel.is_closed or not self.alive():
            channel = self._admin = await self.open_channel()
        return channel

    async def publisher(self) -> Channel:
        """The shared channel for publishing, with publisher confirms."""
        channel = self._publisher
        if channel is None or channel.is_closed or not self.alive():
            channel = self._publisher = await self.open_channel(confirms=True)
        return channel

    async def close(self) -> None:
        """Close the connection gracefully: frames already written (acks) reach the server."""
        self.closed = True
        conn, self._conn = self._conn, None
        self._admin = self._publisher = None
        if conn is not None:
            await _close_quietly(conn, self.connect_timeout)


def _is_open(conn: aio_pika.abc.AbstractConnection) -> bool:
    # aio-pika learns of a server-side close later than the driver underneath it.
    transport = conn.transport
    return not conn.is_closed and transport is not None and not transport.connection.is_closed


async def _close_quietly(conn: aio_pika.abc.AbstractConnection, timeout: float) -> None:
    if conn.is_closed:
        return
    try:
        with anyio.move_on_after(timeout):
            await conn.close()
    except Exception as exc:  # closing a connection that is already dying
        log.debug("closing a RabbitMQ connection: %s", exc)


def parse_version(text: str) -> tuple[int, ...]:
    """``"3.10.8"`` → ``(3, 10, 8)``; unparseable parts end the tuple."""
    parts: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits[0]))
    return tuple(parts)
