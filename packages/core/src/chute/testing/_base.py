"""Fixtures and parametrization every conformance test class shares."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import pytest

from chute.broker import Ack, Broker, Capabilities, dead_queue
from chute.testing._harness import BrokerHarness

F = TypeVar("F", bound=Callable[..., Any])

_MODES_ATTR = "_chute_ack_modes"


def modes(*acks: Ack) -> Callable[[F], F]:
    """Run the decorated test only for these ack modes (default: every mode)."""

    def mark(fn: F) -> F:
        setattr(fn, _MODES_ATTR, acks)
        return fn

    return mark


def requires(caps: Capabilities, *, expiry: bool = False, ordered: bool = False,
             delays: bool = False, persistent: bool = False) -> None:  # fmt: skip
    """Skip, naming the capability, when the broker does not claim what a test checks."""
    if expiry and not caps.lease_expiry:
        pytest.skip("the broker does not claim lease_expiry (leases lapse only on disconnect)")
    if ordered and not caps.ordered:
        pytest.skip("the broker does not claim ordered delivery")
    if delays and caps.max_delay == 0:
        pytest.skip("the broker holds no native delays (max_delay=0)")
    if persistent and not caps.persistent:
        pytest.skip("the broker does not keep messages published while nobody listens")


class ConformanceBase:
    """Fixtures for the suite. Subclasses provide a ``harness`` fixture."""

    pytestmark = pytest.mark.anyio

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "ack" in metafunc.fixturenames:
            acks: tuple[Ack, ...] = getattr(
                metafunc.function, _MODES_ATTR, (Ack.ON_RECEIPT, Ack.ON_COMPLETION)
            )
            metafunc.parametrize("ack", acks, ids=[a.value for a in acks])

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def harness(self) -> BrokerHarness:
        raise NotImplementedError("define a `harness` fixture returning your BrokerHarness")

    @pytest.fixture
    def stress(self, request: pytest.FixtureRequest) -> int:
        return max(1, int(request.config.getoption("chute_stress", 1) or 1))

    @pytest.fixture
    async def queue(self, harness: BrokerHarness, anyio_backend: str) -> AsyncIterator[str]:
        del anyio_backend
        name = f"ct{uuid.uuid4().hex[:12]}"
        yield name
        await harness.cleanup([name, dead_queue(name)])

    @pytest.fixture
    async def broker(
        self, harness: BrokerHarness, ack: Ack, anyio_backend: str
    ) -> AsyncIterator[Broker]:
        del anyio_backend
        broker = await harness.make_broker()
        if ack not in broker.capabilities.acks:
            pytest.skip(f"the broker does not claim {ack.name}")
        async with broker:
            yield broker

    @pytest.fixture
    def connect(
        self, harness: BrokerHarness, broker: Broker
    ) -> Callable[[], AbstractAsyncContextManager[Broker]]:
        """Another connection to the same broker; the same instance for in-process brokers."""

        @asynccontextmanager
        async def another() -> AsyncGenerator[Broker, None]:
            if not broker.capabilities.shared:
                yield broker
                return
            other = await harness.make_broker()
            async with other:
                yield other

        return another

    @pytest.fixture
    def process_url(self, harness: BrokerHarness, broker: Broker) -> str:
        """The URL for a consumer in another process; skips when there is none."""
        if not broker.capabilities.shared:
            pytest.skip("the broker lives in one process (Capabilities.shared is false)")
        url = harness.url()
        if url is None:
            pytest.skip("the harness gives no URL for a consumer in another process")
        return url
