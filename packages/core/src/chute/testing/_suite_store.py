"""Conformance for stores: every promise of :class:`chute.store.Store`, as tests.

Subclass :class:`StoreConformance` with a ``make_store`` fixture returning an async callable
that builds a new, unentered store talking to the backend under test::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def make_store(self) -> Callable[[], Awaitable[Store]]:
            async def make() -> Store:
                return MyStore("mystore://localhost")
            return make
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
import pytest

from chute.store import Store

__all__ = ["StoreConformance"]

MakeStore = Callable[[], Awaitable[Store]]
TOLERANCE = 3.0


class StoreConformance:
    """The store suite. Subclasses provide a ``make_store`` fixture."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError("define a `make_store` fixture")

    @pytest.fixture
    async def store(self, make_store: MakeStore, anyio_backend: str) -> AsyncGenerator[Store, None]:
        del anyio_backend
        store = await make_store()
        async with store:
            yield store

    @pytest.fixture
    def key(self) -> str:
        return f"chute-test:{uuid.uuid4().hex[:12]}"

    async def test_set_get_overwrite_and_missing(self, store: Store, key: str) -> None:
        assert await store.get(key) is None
        await store.set(key, b"one")
        assert await store.get(key) == b"one"
        await store.set(key, b"two")
        assert await store.get(key) == b"two"
        assert await store.get(f"{key}:other") is None

    async def test_values_are_byte_exact(self, store: Store, key: str) -> None:
        values = [b"", bytes(range(256)), b"\xff\xfe\x00 not utf-8", os.urandom(256 * 1024)]
        for i, value in enumerate(values):
            await store.set(f"{key}:{i}", value)
        for i, value in enumerate(values):
            assert await store.get(f"{key}:{i}") == value

    async def test_ttl_expires_the_key(self, store: Store, key: str) -> None:
        await store.set(key, b"short", ttl=1.0)
        await store.set(f"{key}:kept", b"long", ttl=60)
        assert await store.get(key) == b"short"
        deadline = time.monotonic() + 1.0 + TOLERANCE
        while await store.get(key) is not None:
            assert time.monotonic() < deadline, "a key outlived its ttl"
            await anyio.sleep(0.05)
        assert await store.get(f"{key}:kept") == b"long"
        assert await store.add(key, b"again"), "an expired key must behave as absent"

    async def test_add_only_if_absent(self, store: Store, key: str) -> None:
        assert await store.add(key, b"first") is True
        assert await store.add(key, b"second") is False
        assert await store.get(key) == b"first"

    async def test_delete_plain_and_conditional(self, store: Store, key: str) -> None:
        assert await store.delete(key) is False
        await store.set(key, b"mine")
        assert await store.delete(key, value=b"theirs") is False
        assert await store.get(key) == b"mine"
        assert await store.delete(key, value=b"mine") is True
        assert await store.get(key) is None
        await store.set(key, b"x")
        assert await store.delete(key) is True
        assert await store.get(key) is None

    async def test_concurrent_adds_have_exactly_one_winner(
        self, make_store: MakeStore, key: str
    ) -> None:
        stores = [await make_store() for _ in range(4)]
        wins: list[int] = []

        async def contend(store: Store, n: int) -> None:
            if await store.add(key, str(n).encode(), ttl=60):
                wins.append(n)

        async def run(store: Store, first: int) -> None:
            async with store, anyio.create_task_group() as tg:
                for n in range(first, first + 25):
                    tg.start_soon(contend, store, n)

        async with anyio.create_task_group() as tg:
            for i, store in enumerate(stores):
                tg.start_soon(run, store, i * 25)
        assert len(wins) == 1, f"{len(wins)} of 100 concurrent adds won"
        async with stores[0]:
            assert await stores[0].get(key) == str(wins[0]).encode()

    async def test_wait_returns_a_value_written_later_by_another_client(
        self, store: Store, make_store: MakeStore, key: str
    ) -> None:
        other = await make_store()

        async def write_later() -> None:
            await anyio.sleep(0.3)
            async with other:
                await other.set(key, b"done")

        started = time.monotonic()
        value: bytes | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_later)
            value = await store.wait(key, timeout=0.3 + TOLERANCE)
        assert value == b"done"
        assert time.monotonic() - started < 0.3 + TOLERANCE

    async def test_wait_times_out_with_none(self, store: Store, key: str) -> None:
        started = time.monotonic()
        assert await store.wait(key, timeout=0.3) is None
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 0.3 + TOLERANCE
        await store.set(key, b"there")
        assert await store.wait(key, timeout=0.1) == b"there"
