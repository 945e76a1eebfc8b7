"""Redis for the tests: ``$CHUTE_TEST_REDIS_URL``, else 127.0.0.1:6379, else a container."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _redis_harness import PrivateCluster, PrivateRedis  # pyright: ignore[reportMissingImports]

from chute.testing import server_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with server_url(
        "Redis",
        env="CHUTE_TEST_REDIS_URL",
        default="redis://127.0.0.1:6379",
        image="redis:7",
        port=6379,
    ) as url:
        yield url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed, so no private server can be started")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """A three-node Redis Cluster of this test session's own."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed to start a private Redis Cluster")
    cluster = PrivateCluster(binary, cli, tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
