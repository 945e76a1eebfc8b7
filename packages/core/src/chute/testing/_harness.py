"""What a broker author writes to run the conformance suite: a harness."""

from __future__ import annotations

import abc

from chute.broker import Broker

__all__ = ["BrokerHarness"]


class BrokerHarness(abc.ABC):
    """How the conformance suite builds, and optionally disrupts, the broker under test.

    Subclass it and implement :meth:`make_broker`; the broker's own ``capabilities`` decide
    which tests apply. Everything else has a working default.

    Attributes:
        lease: the lease, in seconds, the suite gives consumers in lease and crash tests.
            Short, so the suite is quick; raise it for brokers with a coarse lease clock.
        tolerance: extra seconds a redelivery, a delayed message or a released message may
            take beyond its due time before the test fails. Generous enough for a loaded
            two-core machine.
        early: seconds a delayed message may arrive before its due time, for brokers whose
            delay clock has that granularity.
        can_cut_connections: whether :meth:`cut_connection` is implemented.
        factory: ``module:callable`` that builds a broker from :meth:`url` in a child
            process, for the crash and pause tests. The default resolves the URL scheme
            through installed plugins.
    """

    lease: float = 2.0
    tolerance: float = 4.0
    early: float = 0.05
    factory: str = "chute.plugins:broker_from_url"
    can_cut_connections: bool = False

    @abc.abstractmethod
    async def make_broker(self) -> Broker:
        """A new broker instance, not yet entered, talking to the server under test."""

    def url(self) -> str | None:
        """A URL :attr:`factory` turns into the same broker in another process.

        ``None`` (the default) skips the tests that need a separate process, with that reason;
        a broker whose ``Capabilities.shared`` is true should return one.
        """
        return None

    async def cut_connection(self, broker: Broker) -> None:
        """Sever ``broker``'s connections from the server side, as a network fault would.

        Implement it and set :attr:`can_cut_connections`; otherwise the connection-cut test
        is skipped, with that reason.
        """
        raise NotImplementedError

    async def cleanup(self, queues: list[str]) -> None:
        """Remove what a test left on the server for ``queues``; by default nothing."""
        del queues
