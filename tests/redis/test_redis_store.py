"""The store suite on Redis, and what is particular to the Redis store."""

from __future__ import annotations

import pytest

import chute
from chute.store import Store
from chute.testing import StoreConformance
from chute.testing._suite_store import MakeStore
from chute_redis import RedisStore

pytestmark = pytest.mark.redis


class TestRedisStore(StoreConformance):
    @pytest.fixture
    def make_store(self, redis_url: str) -> MakeStore:
        async def make() -> Store:
            return RedisStore(f"{redis_url}/0?prefix=storetest")

        return make


def test_an_app_on_redis_gets_the_redis_store(redis_url: str) -> None:
    app = chute.App(f"{redis_url}/0")
    assert isinstance(app.store, RedisStore)
    other = chute.App("sqlite:///x.sqlite3", store=f"{redis_url}/0")
    assert isinstance(other.store, RedisStore)


@pytest.mark.anyio
async def test_keys_carry_redis_expiry(redis_url: str) -> None:
    async with RedisStore(f"{redis_url}/0?prefix=storetest") as store:
        await store.set("ttl-check", b"v", ttl=30)
        ttl = await store.client.execute_command("PTTL", "storetest:kv:ttl-check")  # pyright: ignore[reportUnknownMemberType]
        assert 25_000 < ttl <= 30_000
        await store.set("ttl-check", b"v")
        assert await store.client.execute_command("PTTL", "storetest:kv:ttl-check") == -1  # pyright: ignore[reportUnknownMemberType]
        await store.delete("ttl-check")


@pytest.mark.anyio
async def test_results_and_unique_keys_through_the_worker(redis_url: str) -> None:
    app = chute.App(f"{redis_url}/0?prefix=storeapp")

    @app.task(keep_result=60, name="double")
    async def double(x: int) -> int:
        return 2 * x

    async with app:
        await app.broker.purge("default")
        job = await double.options(key="once").enqueue(21)
        again = await double.options(key="once").enqueue(99)
        assert again.id == job.id
        await chute.Worker(app, burst=True).run()
    async with chute.App(f"{redis_url}/0?prefix=storeapp") as reader:
        assert await reader.job(job.id).result(timeout=10) == 42
