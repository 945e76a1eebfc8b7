"""Helpers for the NATS broker's tests: the harness, URLs, cutting connections."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from chute.broker import Broker
from chute.testing import BrokerHarness
from chute_nats import NatsBroker
from chute_nats._connection import Connection
from chute_nats._settings import parse
from chute_nats._setup import remove_consumers

# The lease the suite uses (BrokerHarness.lease) is the consumers' ack wait here, so leases
# lapse on the server's own clock; longer leases are kept by in-progress acks.
ACK_WAIT = 2
NAMESPACE = "chutetest"


def with_options(url: str, **options: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _can_kill_sockets() -> bool:
    return os.geteuid() == 0 and shutil.which("ss") is not None


class NatsHarness(BrokerHarness):
    """JetStream (or, with ``jetstream=False``, core NATS) on the test server."""

    lease = float(ACK_WAIT)

    def __init__(self, url: str, *, jetstream: bool = True) -> None:
        self._url = with_options(url, namespace=NAMESPACE, ack_wait=ACK_WAIT,
                                 jetstream=str(jetstream).lower())  # fmt: skip
        self.jetstream = jetstream
        self.can_cut_connections = _can_kill_sockets()

    async def make_broker(self) -> Broker:
        return NatsBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cut_connection(self, broker: Broker) -> None:
        await cut(broker)

    async def cleanup(self, queues: list[str]) -> None:
        if not self.jetstream:
            return
        conn = Connection(parse(self._url, {}))
        await conn.open()
        try:
            for queue in queues:
                await remove_consumers(conn, queue)
                for subject in (conn.settings.ready_subject(queue),
                                conn.settings.delayed_subject(queue)):  # fmt: skip
                    await conn.api(f"STREAM.PURGE.{conn.settings.stream}", {"filter": subject})
        finally:
            await conn.close()


async def cut(broker: Broker) -> None:
    """Destroy the server's end of ``broker``'s TCP connection, as a network fault would.

    The monitoring endpoint (which could kick a client) is not enabled on the test server, so
    the socket is destroyed through the kernel (``ss -K``, which needs root).
    """
    assert isinstance(broker, NatsBroker)
    nc = broker._conn.nc  # pyright: ignore[reportPrivateUsage]
    writer: Any = nc._transport._io_writer  # type: ignore[union-attr]  # pyright: ignore
    host, port = writer.get_extra_info("sockname")[:2]
    peer_host, peer_port = writer.get_extra_info("peername")[:2]
    subprocess.run(
        ["ss", "-K", "src", peer_host, "sport", "=", str(peer_port),
         "dst", host, "dport", "=", str(port)],
        check=True, capture_output=True,
    )  # fmt: skip
