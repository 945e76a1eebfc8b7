"""The conformance suite against RabbitMQ."""

from __future__ import annotations

import pytest
from rabbitmq_server import SERVER_CONSUMER_TIMEOUT, cut, delete_queues, with_options

from chute.broker import Broker
from chute.testing import BrokerConformance, BrokerHarness
from chute_rabbitmq import RabbitBroker

pytestmark = pytest.mark.rabbitmq


class RabbitHarness(BrokerHarness):
    can_cut_connections = True

    def __init__(self, url: str) -> None:
        self._url = with_options(url, consumer_timeout=SERVER_CONSUMER_TIMEOUT)
        self._plain = url

    async def make_broker(self) -> Broker:
        return RabbitBroker(self._url)

    def url(self) -> str:
        return self._url

    async def cut_connection(self, broker: Broker) -> None:
        assert isinstance(broker, RabbitBroker)
        await cut(broker)

    async def cleanup(self, queues: list[str]) -> None:
        await delete_queues(self._plain, queues)


class TestRabbitBroker(BrokerConformance):
    @pytest.fixture
    def harness(self, rabbitmq_url: str) -> BrokerHarness:
        return RabbitHarness(rabbitmq_url)
