"""chute's pytest plugin: the ``--chute-stress`` option, and the suites' rules.

A class built on :class:`BrokerConformance` or :class:`StoreConformance` may not override a
suite test: a broker either keeps a promise or records that it does not, in the class attribute
``known_failures = {"test_name": "why"}``. Those tests are marked ``xfail(strict=True)``, so a
fix shows up as a failure to remove the entry. Breaking the rule stops collection.
"""

from __future__ import annotations

import pytest

from chute.testing._base import ConformanceBase
from chute.testing._suite_store import StoreConformance

_SUITES = (ConformanceBase, StoreConformance)


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


def _suite_tests(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("chute.testing."):
            names.update(n for n in vars(klass) if n.startswith("test_"))
    return names


def check_binding(cls: type) -> dict[str, str]:
    """Check a suite subclass; return its known failures.

    Raises:
        pytest.UsageError: it overrides a suite test, or names an unknown one.
    """
    suite = _suite_tests(cls)
    for klass in cls.__mro__:
        if klass.__module__.startswith("chute.testing."):
            continue
        overridden = sorted(suite & {n for n in vars(klass) if n.startswith("test_")})
        if overridden:
            raise pytest.UsageError(
                f"{klass.__qualname__} overrides conformance tests {', '.join(overridden)}; "
                "a binding may not change the suite. Record a gap instead with "
                "known_failures = {'test_name': 'reason'}"
            )
    known: dict[str, str] = dict(getattr(cls, "known_failures", {}))
    unknown = sorted(set(known) - suite)
    if unknown:
        raise pytest.UsageError(
            f"{cls.__qualname__}.known_failures names tests the suite does not have: "
            f"{', '.join(unknown)}"
        )
    for name, reason in known.items():
        if not reason.strip():
            raise pytest.UsageError(f"{cls.__qualname__}.known_failures[{name!r}] needs a reason")
    return known


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    checked: dict[type, dict[str, str]] = {}
    for item in items:
        cls = getattr(item, "cls", None)
        if not isinstance(cls, type) or not issubclass(cls, _SUITES):
            continue
        if cls not in checked:
            checked[cls] = check_binding(cls)
        name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
        reason = checked[cls].get(name)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
