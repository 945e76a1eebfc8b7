"""Fixtures for the NATS broker's tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _nats_support import NATS_SERVER, PrivateNats  # pyright: ignore[reportMissingImports]

from chute.testing import server_url


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with server_url(
        "NATS", env="CHUTE_TEST_NATS_URL", default="nats://127.0.0.1:4222",
        image="nats:2.10", port=4222,
    ) as url:  # fmt: skip
        yield url


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[Callable[..., PrivateNats]]:
    """Start nats-servers of the test's own (skips without the nats-server binary)."""
    if not os.access(NATS_SERVER, os.X_OK):
        pytest.skip("no nats-server binary to start a private server with")
    started: list[PrivateNats] = []

    def start(*, jetstream: bool = True) -> PrivateNats:
        server = PrivateNats(tmp_path / f"js{len(started)}", jetstream=jetstream)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
