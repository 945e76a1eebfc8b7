"""Helpers for the NATS broker's tests: the harness, a private server, cutting connections."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio

from chute.broker import Broker
from chute.testing import BrokerHarness
from chute_nats import NatsBroker
from chute_nats._connection import Connection
from chute_nats._settings import parse
from chute_nats._setup import remove_consumers

# The suite's lease (BrokerHarness.lease) is the consumers' ack wait here, so leases lapse on
# the server's own clock; the suite's longer leases are kept by in-progress acks.
ACK_WAIT = 2
NAMESPACE = "chutetest"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def with_options(url: str, **options: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def can_cut_connections() -> bool:
    return os.geteuid() == 0 and shutil.which("ss") is not None


class NatsHarness(BrokerHarness):
    """JetStream (or, with ``jetstream=False``, core NATS) on the test server."""

    lease = float(ACK_WAIT)

    def __init__(self, url: str, *, jetstream: bool = True) -> None:
        self._url = with_options(url, namespace=NAMESPACE, ack_wait=ACK_WAIT,
                                 jetstream=str(jetstream).lower())  # fmt: skip
        self.jetstream = jetstream
        self.can_cut_connections = can_cut_connections()

    async def make_broker(self) -> Broker:
        return NatsBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cut_connection(self, broker: Broker) -> None:
        await cut(broker)

    async def cleanup(self, queues: list[str]) -> None:
        if self.jetstream:
            await forget_queues(self._url, queues)


async def forget_queues(url: str, queues: list[str]) -> None:
    """Delete the queues' consumers and stored messages."""
    conn = Connection(parse(url, {}))
    await conn.open()
    try:
        stream = conn.settings.stream
        for queue in queues:
            await remove_consumers(conn, queue)
            for subject in (conn.settings.ready_subject(queue),
                            conn.settings.delayed_subject(queue)):  # fmt: skip
                await conn.api(f"STREAM.PURGE.{stream}", {"filter": subject}, missing_ok=True)
    finally:
        await conn.close()


async def drop_stream(url: str) -> None:
    conn = Connection(parse(url, {}))
    await conn.open()
    try:
        await conn.api(f"STREAM.DELETE.{conn.settings.stream}", missing_ok=True)
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
    await anyio.run_process(
        ["ss", "-K", "src", peer_host, "sport", "=", str(peer_port),
         "dst", host, "dport", "=", str(port)],
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateNats:
    """A nats-server of this test's own on a free port, which it may stop and restart."""

    def __init__(self, store: Path, *, jetstream: bool = True) -> None:
        self.port = _free_port()
        self.store = store
        self.jetstream = jetstream
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            argv += ["-js", "-sd", str(self.store)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None
