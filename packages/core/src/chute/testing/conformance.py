"""The conformance suite: every promise of the broker protocol, as tests.

Subclass :class:`BrokerConformance` in a test module, give it a ``harness`` fixture, and
pytest collects the whole suite against your broker::

    class TestMyBroker(BrokerConformance):
        @pytest.fixture
        def harness(self) -> BrokerHarness:
            return MyHarness()

Tests run once per ack mode; a mode or capability the broker does not claim is skipped with
the reason, and everything it claims must pass. Bindings may not override suite tests; to
record a known gap, name it in ``known_failures = {"test_name": "reason"}`` on the subclass:
it then runs as a strict xfail, so a fix shows.
"""

from __future__ import annotations

from chute.testing._suite_delivery import DeliveryConformance
from chute.testing._suite_leases import LeaseConformance
from chute.testing._suite_processes import ProcessConformance

__all__ = ["BrokerConformance"]


class BrokerConformance(DeliveryConformance, LeaseConformance, ProcessConformance):
    """The whole suite. Subclass it with a ``harness`` fixture."""
