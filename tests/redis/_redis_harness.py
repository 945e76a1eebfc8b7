"""The conformance harness for the Redis broker, shared by the Redis test modules."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from chute.broker import Broker
from chute.testing import BrokerHarness
from chute_redis import RedisBroker


class RedisHarness(BrokerHarness):
    can_cut_connections = True

    def __init__(self, url: str) -> None:
        self._url = url

    async def make_broker(self) -> Broker:
        return RedisBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cut_connection(self, broker: Broker) -> None:
        assert isinstance(broker, RedisBroker)
        await kill_clients(self._url, broker.client_name)

    async def cleanup(self, queues: list[str]) -> None:
        async with aioredis.Redis.from_url(self._url) as r:
            for queue in queues:
                await r.delete(*RedisBroker(self._url).keys(queue).all())


async def kill_clients(url: str, name: str) -> int:
    """``CLIENT KILL`` every connection named ``name``; how many there were."""
    async with aioredis.Redis.from_url(url) as r:
        clients = await r.client_list()
        ids = [c["id"] for c in clients if c.get("name") == name]
        for client_id in ids:
            await r.execute_command("CLIENT", "KILL", "ID", client_id)
        return len(ids)


class PrivateRedis:
    """A redis-server process of one test's own, on a unix socket: tests that change server
    settings or stop the server use it, so the shared server is never touched."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail("the private redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
