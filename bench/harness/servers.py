"""The servers the systems run on: where they are, whether they answer, their version, and how
to wipe what a run left behind without touching anything else on a shared server.

- Redis: a dedicated database number (13 unless ``CHUTE_BENCH_REDIS_URL`` names another), and
  ``FLUSHDB`` of that database only. Database 0, where other users live, is refused.
- NATS: every JetStream stream whose name starts with ``BENCH`` is deleted (every adapter names
  its streams so).
- RabbitMQ: the queues and exchanges the adapters declare for the bench queue name are deleted
  by name.
- SQLite: a fresh file per run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["QUEUE", "Server", "server_for"]

# The queue (or subject, or stream) name every adapter uses.
QUEUE = "chute_bench"

_DEFAULTS = {
    "redis": "redis://127.0.0.1:6379/13",
    "nats": "nats://127.0.0.1:4222",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
}


@dataclass
class Server:
    """One server kind as the harness sees it."""

    kind: str
    url: str

    def run_url(self, run_dir: Path) -> str:
        """The URL a run uses (SQLite: a file in the run's directory)."""
        if self.kind == "sqlite":
            return f"sqlite:///{run_dir / 'bench.sqlite3'}"
        return self.url

    def problem(self) -> str | None:
        """Why this server cannot be used, or None."""
        if self.kind in ("sqlite", "none"):
            return None
        if not self.url and self.kind == "sqs":
            # moto, the local stand-in the tests use, serves a few hundred messages a second
            # from one Python process: at these sizes it would measure moto, not chute.
            return (
                "no SQS endpoint: set CHUTE_BENCH_SQS_URL to real SQS or ElasticMQ "
                "(moto is too slow to measure at these sizes; bench/sqs_drain.py runs a "
                "small drain on it)"
            )
        if not self.url:
            return f"no {self.kind} endpoint: set CHUTE_BENCH_{self.kind.upper()}_URL"
        parts = urlsplit(self.url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
                pass
        except OSError as error:
            return f"{self.kind} at {parts.hostname}:{parts.port} does not answer ({error})"
        if self.kind == "redis" and _redis_db(self.url) == 0:
            return "refusing Redis database 0 (it is flushed between runs): use /13 or another"
        return None

    def flush(self, run_dir: Path) -> None:
        """Delete what runs left on the server."""
        if self.kind == "sqlite":
            for path in run_dir.glob("bench.sqlite3*"):
                path.unlink()
        elif self.kind == "redis":
            _resp(self.url, [["SELECT", str(_redis_db(self.url))], ["FLUSHDB"]])
        elif self.kind == "nats":
            asyncio.run(_nats_flush(self.url))
        elif self.kind == "rabbitmq":
            asyncio.run(_rabbit_flush(self.url))

    def version(self) -> str:
        """The server's version, as it reports it."""
        try:
            if self.kind == "redis":
                info = _resp(self.url, [["INFO", "server"]])[0]
                for line in info.splitlines():
                    if line.startswith("redis_version:"):
                        return "Redis " + line.split(":", 1)[1].strip()
            elif self.kind == "nats":
                parts = urlsplit(self.url)
                with socket.create_connection((parts.hostname, parts.port or 4222), 2) as sock:
                    line = sock.makefile("rb").readline().decode()
                return "NATS " + json.loads(line.removeprefix("INFO "))["version"]
            elif self.kind == "rabbitmq":
                return "RabbitMQ " + asyncio.run(_rabbit_version(self.url))
            elif self.kind == "sqlite":
                import sqlite3

                return "SQLite " + sqlite3.sqlite_version
        except Exception as error:
            return f"{self.kind} (version unknown: {error})"
        return self.kind


def server_for(kind: str) -> Server:
    """The server of ``kind``, from ``CHUTE_BENCH_<KIND>_URL`` or the usual local address."""
    env = os.environ.get(f"CHUTE_BENCH_{kind.upper()}_URL")
    return Server(kind, env or _DEFAULTS.get(kind, ""))


def _redis_db(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path else 0


def _resp(url: str, commands: list[list[str]]) -> list[str]:
    """Send Redis commands over a plain socket (RESP2) and return the replies as text."""
    parts = urlsplit(url)
    out = b""
    if parts.password:
        auth = [parts.username, parts.password] if parts.username else [parts.password]
        commands = [["AUTH", *auth], *commands]
    for command in commands:
        out += f"*{len(command)}\r\n".encode()
        for arg in command:
            data = arg.encode()
            out += f"${len(data)}\r\n".encode() + data + b"\r\n"
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as s:
        s.sendall(out)
        stream = s.makefile("rb")
        replies = [_read_reply(stream) for _ in commands]
    return replies[1:] if parts.password else replies


def _read_reply(stream: object) -> str:
    line = stream.readline().decode().rstrip("\r\n")  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:]
    if kind == "-":
        raise RuntimeError(f"Redis: {rest}")
    if kind == "$":
        size = int(rest)
        return "" if size < 0 else stream.read(size + 2)[:-2].decode()  # type: ignore[attr-defined]
    return rest


async def _nats_flush(url: str) -> None:
    import nats  # installed with every NATS system

    client = await nats.connect(url, connect_timeout=5)
    try:
        js = client.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith("BENCH"):
                await js.delete_stream(info.config.name)
    finally:
        await client.close()


def _rabbit_names() -> tuple[list[str], list[str]]:
    """Queues and exchanges the adapters may declare for the bench queue."""
    q = QUEUE
    queues = [q, f"{q}.dead", f"{q}.DQ", f"{q}.XQ", f"{q}.delay", f"{q}_delay"]
    queues += [f"{q}.delay.{level:02d}" for level in range(31)]
    exchanges = [f"{q}_exchange"]
    return queues, exchanges


async def _rabbit_flush(url: str) -> None:
    import aiormq  # installed with every RabbitMQ system

    connection = await aiormq.connect(url)
    try:
        queues, exchanges = _rabbit_names()
        for name in queues:
            channel = await connection.channel()
            try:
                await channel.queue_delete(name)
            except aiormq.exceptions.ChannelClosed:
                pass  # absent
        for name in exchanges:
            channel = await connection.channel()
            try:
                await channel.exchange_delete(name)
            except aiormq.exceptions.ChannelClosed:
                pass
    finally:
        await connection.close()


async def _rabbit_version(url: str) -> str:
    import aiormq

    connection = await aiormq.connect(url)
    try:
        props = connection.server_properties
        version = props.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()


def clean_dir(path: Path) -> None:
    """Empty a run directory (counter files, SQLite files)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
