"""Fixtures for the NATS broker's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chute.testing import server_url


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with server_url(
        "NATS", env="CHUTE_TEST_NATS_URL", default="nats://127.0.0.1:4222",
        image="nats:2.10", port=4222,
    ) as url:  # fmt: skip
        yield url
