"""The conformance suite against SQS (a local moto server unless $CHUTE_TEST_SQS_URL says)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from _sqs_proxy import CuttableProxy

from chute.broker import Broker
from chute.testing import BrokerConformance, BrokerHarness
from chute_sqs import SqsBroker

pytestmark = pytest.mark.sqs


class SqsHarness(BrokerHarness):
    """Brokers reach the endpoint through a proxy that can cut their connections."""

    def __init__(
        self,
        url: str,
        proxy: tuple[str, CuttableProxy] | None,
        delete_queues: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self._url = proxy[0] if proxy is not None else url
        self._proxy = proxy[1] if proxy is not None else None
        self.can_cut_connections = proxy is not None
        self._delete_queues = delete_queues

    async def make_broker(self) -> Broker:
        return SqsBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cut_connection(self, broker: Broker) -> None:
        del broker
        assert self._proxy is not None
        self._proxy.cut()

    async def cleanup(self, queues: list[str]) -> None:
        await self._delete_queues(queues)


class TestSqsBroker(BrokerConformance):
    @pytest.fixture
    def harness(
        self,
        sqs_url: str,
        sqs_proxy: tuple[str, CuttableProxy] | None,
        delete_queues: Callable[[list[str]], Awaitable[None]],
    ) -> BrokerHarness:
        return SqsHarness(sqs_url, sqs_proxy, delete_queues)
