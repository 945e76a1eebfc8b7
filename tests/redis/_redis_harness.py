"""The conformance harness for the Redis broker, shared by the Redis test modules."""

from __future__ import annotations

import random
import socket
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

    def __init__(self, url: str, nodes: list[str] | None = None) -> None:
        self._url = url
        # Plain URLs of every server the broker may talk to (the nodes of a cluster).
        self._nodes = nodes or [url]

    async def make_broker(self) -> Broker:
        return RedisBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cut_connection(self, broker: Broker) -> None:
        assert isinstance(broker, RedisBroker)
        for node in self._nodes:
            await kill_clients(node, broker.client_name)

    async def cleanup(self, queues: list[str]) -> None:
        for node in self._nodes:
            async with aioredis.Redis.from_url(node) as r:
                for queue in queues:
                    for key in RedisBroker(self._url).keys(queue).all():
                        try:
                            await r.delete(key)
                        except aioredis.ResponseError:
                            pass  # MOVED: the key lives on another node of the cluster


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
        argv = [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--save", "",
                "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


class PrivateCluster:
    """Three redis-server processes of the test session's own, joined into a Redis Cluster."""

    def __init__(self, binary: str, cli: str, folder: Path) -> None:
        self.binary = binary
        self.cli = cli
        self.folder = folder
        self.ports = [free_port() for _ in range(3)]
        self.nodes = [f"redis://127.0.0.1:{p}" for p in self.ports]
        self.url = f"{self.nodes[0]}?cluster=true"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port in self.ports:
            home = self.folder / str(port)
            home.mkdir()
            argv = [self.binary, "--port", str(port), "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes", "--cluster-config-file", str(home / "nodes.conf"),
                    "--save", "", "--appendonly", "no", "--dir", str(home)]  # fmt: skip
            self.procs.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in self.ports:
            wait_for_port(port)
        subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            info = subprocess.run(
                [self.cli, "-p", str(self.ports[0]), "cluster", "info"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            if "cluster_state:ok" in info.stdout:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the private cluster never became ready: {info.stdout}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


def free_port() -> int:
    """A port that is free, and whose cluster bus port (10000 above) is free too."""
    while True:
        port = random.randrange(20000, 50000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.02)
