"""The store suite against the stores that ship in core."""

from __future__ import annotations

from pathlib import Path

import pytest

from chute.store import Store
from chute.stores import MemoryStore, SqliteStore
from chute.testing import StoreConformance
from chute.testing._suite_store import MakeStore


@pytest.mark.memory
class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        shared = MemoryStore()

        async def make() -> Store:
            return shared

        return make


@pytest.mark.sqlite
class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        async def make() -> Store:
            return SqliteStore(path=tmp_path / "store.sqlite3")

        return make
