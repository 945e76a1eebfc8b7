"""One NATS connection: connecting, reconnecting, JetStream API calls, stored publishes."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from chute.errors import BrokerError, BrokerUnavailable
from chute_nats._errors import api_error, check_pub_ack, describe, translate
from chute_nats._settings import Settings

log = logging.getLogger("chute.nats")

# A stored publish unconfirmed after this long is sent again (it may have been lost with a
# dying connection); the deduplication id makes that safe.
_ATTEMPT = 2.0

_FOREVER = 24 * 3600

# The oldest server this package is tested against; older ones lack what it relies on.
MIN_SERVER = (2, 9)


class Connection:
    """A NATS client that reconnects forever and tells listeners when it is back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._flushes: set[asyncio.Future[None]] = set()
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count()
        # Confirmations of stored publishes, by the token ending their reply subject.
        self._acks_prefix = ""
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self.reconnected: set[Callable[[], None]] = set()

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise BrokerError(
                f"NATS broker at {self.settings.safe_url} is not connected (use `async with`)"
            )
        return self._nc

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def server_version(self) -> tuple[int, int, int]:
        version = self.nc.connected_server_version
        return (version.major, version.minor, version.patch)

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    def failures(self, queue: str | None, action: str) -> AbstractContextManager[None]:
        """Translate driver errors into chute's, naming the URL, the queue and the action."""
        where = f"NATS at {self.settings.safe_url}"
        if queue is not None:
            where += f", queue {queue!r}"
        return translate(where, action)

    async def open(self) -> None:
        settings = self.settings
        nc = Client()
        self._pending.clear()

        async def on_error(exc: Exception) -> None:
            log.debug("NATS at %s: %s", settings.safe_url, describe(exc))

        async def on_disconnect() -> None:
            if self._nc is None:  # closing
                return
            log.warning("NATS at %s: connection lost; reconnecting", settings.safe_url)

        async def on_reconnect() -> None:
            log.warning("NATS at %s: reconnected", settings.safe_url)
            for listener in list(self.reconnected):
                listener()

        with self.failures(None, "connecting"):
            try:
                # The client retries forever once connected; only the first connection has a
                # deadline, so a wrong URL fails instead of hanging.
                await asyncio.wait_for(
                    nc.connect(
                        servers=settings.servers,
                        name=settings.name,
                        connect_timeout=max(1, round(settings.connect_timeout)),
                        reconnect_time_wait=0.5,  # pyright: ignore[reportArgumentType]
                        max_reconnect_attempts=-1,
                        ping_interval=10,
                        max_outstanding_pings=3,
                        error_cb=on_error,
                        disconnected_cb=on_disconnect,
                        reconnected_cb=on_reconnect,
                    ),
                    settings.connect_timeout,
                )
                self._acks_prefix = f"{nc.new_inbox()}."
                await nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
                    f"{self._acks_prefix}*", cb=self._confirmed
                )
            except BaseException:
                await nc.close()
                raise
        self._nc = nc

    async def close(self) -> None:
        try:
            if self.connected:
                await self.flush()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("NATS at %s: could not flush on close: %s", self.settings.safe_url, exc)
        finally:
            nc, self._nc = self._nc, None
            if nc is not None:
                await nc.close()
            for task in self._flushes:
                task.cancel()

    async def flush(self) -> None:
        """Wait until the server has received everything sent so far (a PING/PONG round trip).

        The client library fails its reading loop when a PONG arrives for a flush that was
        cancelled or timed out, so the flush itself is shielded and never times out; only the
        wait for it does. A flush orphaned by a lost connection is cancelled on close.

        Raises:
            TimeoutError: no answer within ``request_timeout``.
        """
        task = asyncio.ensure_future(self.nc.flush(timeout=_FOREVER))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        await asyncio.wait_for(asyncio.shield(task), self.settings.request_timeout)

    async def api(
        self, subject: str, payload: dict[str, Any] | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any]:
        """Call the JetStream API; ``{}`` for a 404 answer when ``missing_ok``.

        Raises:
            ApiError: the server answered with an error.
            BrokerError: JetStream is not enabled on the server.
        """
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            msg = await self.nc.request(
                f"$JS.API.{subject}", data, timeout=self.settings.request_timeout
            )
        except nats.errors.NoRespondersError:
            raise BrokerError(
                f"NATS at {self.settings.safe_url}: JetStream is not enabled on the server; "
                "start nats-server with -js, or use core NATS with ?jetstream=false"
            ) from None
        answer: dict[str, Any] = json.loads(msg.data)
        error = api_error(answer)
        if error is not None:
            if missing_ok and error.code == 404:
                return {}
            raise error
        return answer

    def message_id(self) -> str:
        """A fresh deduplication id, unique across connections and processes."""
        return f"{self._id_prefix}{next(self._ids):x}"

    async def store(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish one message to a stream; see :meth:`store_many`."""
        await self.store_many([(subject, body, headers)])

    async def store_many(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> None:
        """Publish ``(subject, body, headers)`` messages to streams, confirmed as stored.

        All are sent at once and their confirmations awaited together on one inbox. Each
        message's headers must hold a ``Nats-Msg-Id``: one left unconfirmed after a few
        seconds (lost, say, with a dying connection) is sent again, and the id lets the stream
        drop the second copy if the first was stored after all.

        Raises:
            NoStream: no stream captures a subject.
            ApiError: a stream refused a message.
            nats.errors.TimeoutError: some were not confirmed within ``request_timeout``.
        """
        nc = self.nc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        todo = list(messages)
        while todo:
            waiting: dict[str, tuple[asyncio.Future[Msg], tuple[str, bytes, dict[str, str]]]] = {}
            try:
                for message in todo:
                    token = f"{next(self._ids):x}"
                    future: asyncio.Future[Msg] = loop.create_future()
                    self._pending[token] = future
                    waiting[token] = (future, message)
                    subject, body, headers = message
                    await nc.publish(subject, body, self._acks_prefix + token, headers)
                attempt = min(_ATTEMPT, deadline - loop.time())
                if attempt > 0:
                    await asyncio.wait([f for f, _ in waiting.values()], timeout=attempt)
            finally:
                for token in waiting:
                    self._pending.pop(token, None)
            todo = [message for future, message in waiting.values() if not future.done()]
            for future, _ in waiting.values():
                if future.done():
                    check_pub_ack(future.result())
            if todo and loop.time() >= deadline:
                raise nats.errors.TimeoutError

    async def _confirmed(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._acks_prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def send(self, subject: str, payload: bytes = b"") -> None:
        """Publish a protocol message (ack, nak, progress) only while connected.

        A message written while reconnecting would sit in the client's buffer and reach the
        server late, when the lease it refers to may have gone to another consumer.

        Raises:
            BrokerUnavailable: not connected right now.
        """
        if not self.connected:
            raise BrokerUnavailable(
                f"NATS at {self.settings.safe_url}: not connected; the message will be "
                "redelivered once its lease lapses"
            )
        await self.nc.publish(subject, payload)


def delivery_info(reply: str) -> tuple[int, str]:
    """The delivery count and the stream sequence, from a JetStream message's reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<seq>...`` (9 tokens), or with a domain and an
    account hash after ``ACK`` (11 or more tokens).
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[4]), tokens[5]
    return int(tokens[6]), tokens[7]
