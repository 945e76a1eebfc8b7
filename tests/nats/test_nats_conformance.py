"""The conformance suite against NATS: JetStream, and core NATS."""

from __future__ import annotations

import pytest
from _nats_support import NatsHarness

from chute.testing import BrokerConformance, BrokerHarness

pytestmark = pytest.mark.nats


class TestNatsJetStream(BrokerConformance):
    @pytest.fixture
    def harness(self, nats_url: str) -> BrokerHarness:
        return NatsHarness(nats_url)


class TestNatsCore(BrokerConformance):
    @pytest.fixture
    def harness(self, nats_url: str) -> BrokerHarness:
        return NatsHarness(nats_url, jetstream=False)
