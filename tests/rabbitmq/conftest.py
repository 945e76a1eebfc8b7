"""A RabbitMQ server for the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chute.testing import server_url


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    with server_url(
        "RabbitMQ",
        env="CHUTE_TEST_RABBITMQ_URL",
        default="amqp://guest:guest@127.0.0.1:5672/",
        image="rabbitmq:3.13",
        port=5672,
    ) as url:
        yield url
