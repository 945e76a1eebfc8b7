"""The suite has teeth: brokers with one deliberate defect each fail the tests that check it."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.sqlite

SUITE = """
import pytest
from pathlib import Path
from chute.broker import Broker
from chute.testing import BrokerConformance, BrokerHarness
import broken_brokers


class Harness(BrokerHarness):
    def __init__(self, make, url=None, factory=None):
        self.make, self._url = make, url
        if factory:
            self.factory = factory

    async def make_broker(self) -> Broker:
        return self.make()

    def url(self):
        return self._url


class TestBroken(BrokerConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> BrokerHarness:
        {harness}
"""


def run_suite(pytester: pytest.Pytester, harness: str, select: str) -> pytest.RunResult:
    pytester.makepyfile(test_broken=SUITE.format(harness=harness))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", select, "-q", "-rf")


def failed(result: pytest.RunResult) -> set[str]:
    """The tests that failed, each of which must have failed on one of the suite's assertions."""
    names = {
        line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED")
    }
    text = result.stdout.str()
    for name in names:
        header = re.search(rf"_+ TestBroken\.{re.escape(name)} _+", text)
        assert header is not None, name
        section = text[header.end() :].split("\n___", 1)[0]
        assert "AssertionError" in section, f"{name} failed without a suite assertion"
        for other in ("BrokerError", "ProgrammingError", "TypeError", "AttributeError"):
            assert other not in section, f"{name} failed on {other}, not on the defect"
    return names


def test_ack_that_does_nothing_is_caught(pytester: pytest.Pytester) -> None:
    result = run_suite(
        pytester,
        "return Harness(broken_brokers.AckDoesNothing)",
        "acked_message_never_comes_back or round_trip",
    )
    assert failed(result) == {"test_acked_message_never_comes_back[completion]"}
    assert result.parseoutcomes()["passed"] == 2  # round trip in both modes is unaffected


def test_ignoring_prefetch_is_caught(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, "return Harness(broken_brokers.IgnoresPrefetch)", "prefetch")
    assert failed(result) == {
        "test_prefetch_bounds_what_a_consumer_holds[receipt]",
        "test_prefetch_bounds_what_a_consumer_holds[completion]",
    }


def test_unfenced_stale_ack_is_caught(pytester: pytest.Pytester) -> None:
    result = run_suite(
        pytester,
        "path = tmp_path / 'b.sqlite3'\n"
        "        return Harness(lambda: broken_brokers.NoFencing(path=path),\n"
        "                       url=f'sqlite:///{path}', factory='broken_brokers:NoFencing')",
        "stale_ack or paused",
    )
    assert failed(result) == {
        "test_stale_ack_does_not_remove_the_redelivered_copy[completion]",
        "test_ack_from_a_paused_consumer_does_not_remove_the_redelivered_copy[completion]",
    }


def test_leases_that_never_lapse_are_caught(pytester: pytest.Pytester) -> None:
    result = run_suite(
        pytester,
        "path = tmp_path / 'b.sqlite3'\n"
        "        return Harness(lambda: broken_brokers.LeasesNeverLapse(path=path),\n"
        "                       url=f'sqlite:///{path}',\n"
        "                       factory='broken_brokers:LeasesNeverLapse')",
        "killed_consumer_loses_nothing or lapsed_lease",
    )
    assert failed(result) == {
        "test_killed_consumer_loses_nothing_it_held[completion]",
        "test_lapsed_lease_redelivers_with_attempt_raised[completion]",
    }


def test_a_binding_may_not_override_a_suite_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cheat="""
        import pytest
        from chute.brokers import MemoryBroker
        from chute.testing import BrokerConformance, BrokerHarness

        class Harness(BrokerHarness):
            async def make_broker(self):
                return MemoryBroker()

        class TestCheat(BrokerConformance):
            @pytest.fixture
            def harness(self):
                return Harness()

            async def test_round_trip_is_byte_exact(self):
                pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "overrides conformance tests test_round_trip_is_byte_exact" in result.stderr.str()


def test_known_failures_become_strict_xfails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gap=SUITE.format(harness="return Harness(broken_brokers.IgnoresPrefetch)").replace(
            "class TestBroken(BrokerConformance):",
            "class TestBroken(BrokerConformance):\n"
            "    known_failures = {'test_prefetch_bounds_what_a_consumer_holds':"
            " 'this broker fetches everything'}\n",
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-k", "prefetch_bounds")
    outcomes = result.parseoutcomes()
    assert outcomes["xfailed"] == 2
    assert "failed" not in outcomes
    assert "passed" not in outcomes
