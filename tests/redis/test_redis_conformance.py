"""The whole conformance suite against a real Redis server, in both ack modes."""

from __future__ import annotations

import pytest
from _redis_harness import RedisHarness  # pyright: ignore[reportMissingImports]

from chute.testing import BrokerConformance, BrokerHarness

pytestmark = pytest.mark.redis


class TestRedisBroker(BrokerConformance):
    @pytest.fixture
    def harness(self, redis_url: str) -> BrokerHarness:
        return RedisHarness(redis_url)
