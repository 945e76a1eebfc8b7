"""chute's pytest plugin: options for the conformance suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chute")
    group.addoption(
        "--chute-stress",
        dest="chute_stress",
        type=int,
        default=1,
        metavar="N",
        help="repeat the conformance suite's concurrency and crash scenarios N times",
    )
