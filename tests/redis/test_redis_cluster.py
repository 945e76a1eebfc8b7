"""The conformance suite against a three-node Redis Cluster started for the session."""

from __future__ import annotations

import pytest
from _redis_harness import PrivateCluster, RedisHarness  # pyright: ignore[reportMissingImports]

from chute.store import Store
from chute.testing import BrokerConformance, BrokerHarness, StoreConformance
from chute.testing._suite_store import MakeStore
from chute_redis import RedisStore

pytestmark = pytest.mark.redis


class TestRedisClusterBroker(BrokerConformance):
    @pytest.fixture
    def harness(self, redis_cluster: PrivateCluster) -> BrokerHarness:
        return RedisHarness(redis_cluster.url, nodes=redis_cluster.nodes)


class TestRedisClusterStore(StoreConformance):
    @pytest.fixture
    def make_store(self, redis_cluster: PrivateCluster) -> MakeStore:
        async def make() -> Store:
            return RedisStore(redis_cluster.url)

        return make
