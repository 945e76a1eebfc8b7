"""The store suite on JetStream key/value, and what is particular to it."""

from __future__ import annotations

import pytest

import chute
from chute.store import Store
from chute.testing import StoreConformance
from chute.testing._suite_store import MakeStore
from chute_nats.store import NatsStore, encode_key

pytestmark = pytest.mark.nats


class TestNatsStore(StoreConformance):
    @pytest.fixture
    def make_store(self, nats_url: str) -> MakeStore:
        async def make() -> Store:
            return NatsStore(f"{nats_url}?namespace=storetest")

        return make


def test_keys_are_made_safe_for_subjects() -> None:
    assert encode_key("chute:job:1a2b") == "chute=3Ajob=3A1a2b"
    assert encode_key("a.b c*>=") == "a=2Eb=20c=2A=3E=3D"
    assert encode_key("") == "=00"


def test_an_app_on_nats_gets_the_nats_store(nats_url: str) -> None:
    app = chute.App(nats_url)
    assert isinstance(app.store, NatsStore)


@pytest.mark.anyio
async def test_core_nats_mode_has_no_store(nats_url: str) -> None:
    with pytest.raises(chute.BrokerError, match="core NATS mode keeps nothing"):
        async with NatsStore(f"{nats_url}?jetstream=false"):
            pass


@pytest.mark.anyio
async def test_results_and_unique_keys_through_the_worker(nats_url: str) -> None:
    app = chute.App(f"{nats_url}?namespace=storeapp")

    @app.task(keep_result=60, name="double")
    async def double(x: int) -> int:
        return 2 * x

    async with app:
        await app.broker.purge("default")
        job = await double.options(key="once").enqueue(21)
        again = await double.options(key="once").enqueue(99)
        assert again.id == job.id
        await chute.Worker(app, burst=True).run()
    async with chute.App(f"{nats_url}?namespace=storeapp") as reader:
        assert await reader.job(job.id).result(timeout=10) == 42
