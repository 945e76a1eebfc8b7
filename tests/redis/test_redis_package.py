"""chute_redis's public names and its entry points."""

from __future__ import annotations

import pytest

import chute_redis
from chute.plugins import broker_from_url, installed_brokers
from chute_redis import RedisBroker

pytestmark = pytest.mark.redis


def test_all_is_sorted_and_complete() -> None:
    assert chute_redis.__all__ == sorted(chute_redis.__all__)
    for name in chute_redis.__all__:
        assert hasattr(chute_redis, name)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://user:pw@example.com:6380/1", "unix:///tmp/r.sock"],
)
def test_each_scheme_builds_a_redis_broker_by_url(url: str) -> None:
    assert {"redis", "rediss", "unix"} <= {p.scheme for p in installed_brokers()}
    assert isinstance(broker_from_url(url), RedisBroker)
