"""Redis for the tests: ``$CHUTE_TEST_REDIS_URL``, else 127.0.0.1:6379, else a container."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
