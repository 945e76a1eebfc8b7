"""Testing tools for chute users and broker authors.

- :class:`BrokerConformance` and :class:`BrokerHarness`: the conformance suite that proves a
  broker keeps every promise of :mod:`chute.broker`.
- :class:`StoreConformance`: the same for stores (results, unique keys, cron slots).
- :func:`server_url`: find a server for tests (environment, local port, testcontainers).

The pytest plugin (loaded automatically once chute is installed) adds ``--chute-stress N``.
"""

from chute.testing._harness import BrokerHarness
from chute.testing._suite_store import StoreConformance
from chute.testing.conformance import BrokerConformance
from chute.testing.servers import server_url

__all__ = ["BrokerConformance", "BrokerHarness", "StoreConformance", "server_url"]
