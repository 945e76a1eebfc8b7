"""The conformance suite against a three-node Redis Cluster started for the session."""

from __future__ import annotations

import pytest
from _redis_harness import PrivateCluster, RedisHarness  # pyright: ignore[reportMissingImports]

from chute.testing import BrokerConformance, BrokerHarness

pytestmark = pytest.mark.redis


class TestRedisClusterBroker(BrokerConformance):
    @pytest.fixture
    def harness(self, redis_cluster: PrivateCluster) -> BrokerHarness:
        return RedisHarness(redis_cluster.url, nodes=redis_cluster.nodes)
