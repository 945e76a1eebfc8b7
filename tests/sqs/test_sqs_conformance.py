"""The conformance suite against SQS (a local moto server unless $CHUTE_TEST_SQS_URL says)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from chute.broker import Broker
from chute.testing import BrokerConformance, BrokerHarness
from chute_sqs import SqsBroker

pytestmark = pytest.mark.sqs


class SqsHarness(BrokerHarness):
    def __init__(self, url: str, delete_queues: Callable[[list[str]], Awaitable[None]]) -> None:
        self._url = url
        self._delete_queues = delete_queues

    async def make_broker(self) -> Broker:
        return SqsBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cleanup(self, queues: list[str]) -> None:
        await self._delete_queues(queues)


class TestSqsBroker(BrokerConformance):
    @pytest.fixture
    def harness(
        self, sqs_url: str, delete_queues: Callable[[list[str]], Awaitable[None]]
    ) -> BrokerHarness:
        return SqsHarness(sqs_url, delete_queues)
