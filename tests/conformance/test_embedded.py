"""The conformance suite against the brokers that ship in core."""

from __future__ import annotations

from pathlib import Path

import pytest

from chute.broker import Broker
from chute.brokers import MemoryBroker, SqliteBroker
from chute.testing import BrokerConformance, BrokerHarness


class MemoryHarness(BrokerHarness):
    def __init__(self) -> None:
        self.broker = MemoryBroker()

    async def make_broker(self) -> Broker:
        return self.broker


class SqliteHarness(BrokerHarness):
    def __init__(self, path: Path) -> None:
        self.path = path

    async def make_broker(self) -> Broker:
        return SqliteBroker(path=self.path)

    def url(self) -> str:
        return f"sqlite:///{self.path}"


@pytest.mark.memory
class TestMemoryBroker(BrokerConformance):
    @pytest.fixture
    def harness(self) -> BrokerHarness:
        return MemoryHarness()


@pytest.mark.sqlite
class TestSqliteBroker(BrokerConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> BrokerHarness:
        return SqliteHarness(tmp_path / "broker.sqlite3")
