"""Public names come through ``__init__`` with a sorted ``__all__`` that names only real things."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.memory

MODULES = [
    "chute",
    "chute.broker",
    "chute.brokers",
    "chute.errors",
    "chute.testing",
    "chute.worker",
    "chute.plugins",
    "chute.dead",
    "chute.store",
    "chute.stores",
    "chute.results",
]


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions, each alphabetical (ruff's RUF022 order)."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"


def test_everything_public_at_the_top_is_exported() -> None:
    import chute

    public = {n for n in vars(chute) if n[0].isalpha()}
    submodules = {
        "app", "backoff", "broker", "brokers", "dead", "errors", "job", "message", "plugins",
        "resources", "signals", "task", "testing", "worker", "cli", "results", "store",
        "stores", "schedules",
    }  # fmt: skip
    assert public - submodules == set(chute.__all__) - {"__version__"}


def test_error_tree_has_one_root() -> None:
    import chute.errors as errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ChuteError)
