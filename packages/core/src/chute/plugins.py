"""Finding brokers (and stores) by URL scheme through entry points.

A broker package registers a callable that takes the URL, usually its broker class::

    [project.entry-points."chute.brokers"]
    redis = "chute_redis:RedisBroker"
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from chute.broker import Broker
from chute.errors import BrokerNotInstalled, ConfigurationError
from chute.store import Store

__all__ = [
    "BROKER_GROUP",
    "DEFAULT_BROKER_URL",
    "STORE_GROUP",
    "BrokerPlugin",
    "broker_from_url",
    "installed_brokers",
    "redact_url",
    "store_from_url",
    "store_plugin_for",
]

BROKER_GROUP = "chute.brokers"
STORE_GROUP = "chute.stores"
DEFAULT_BROKER_URL = "sqlite:///chute.sqlite3"

# Where to find the first-party plugin for a scheme, for the error message only.
_SUGGESTIONS = {
    "redis": "chute[redis]",
    "rediss": "chute[redis]",
    "unix": "chute[redis]",
    "nats": "chute[nats]",
    "tls": "chute[nats]",
    "amqp": "chute[rabbitmq]",
    "amqps": "chute[rabbitmq]",
    "sqs": "chute[sqs]",
}


@dataclass(frozen=True, slots=True)
class BrokerPlugin:
    """An installed broker plugin.

    Attributes:
        scheme: the URL scheme it serves.
        target: the entry point's ``module:attribute``.
        distribution: the package that registered it, with its version.
    """

    scheme: str
    target: str
    distribution: str

    def load(self) -> Callable[[str], Broker]:
        """Import the plugin's factory."""
        for ep in importlib.metadata.entry_points(group=BROKER_GROUP, name=self.scheme):
            return cast(Callable[[str], Broker], ep.load())
        raise BrokerNotInstalled(f"broker plugin for {self.scheme}:// disappeared")


def installed_brokers() -> list[BrokerPlugin]:
    """Every broker plugin installed, sorted by scheme."""
    plugins: list[BrokerPlugin] = []
    for ep in importlib.metadata.entry_points(group=BROKER_GROUP):
        dist = ep.dist
        label = f"{dist.name} {dist.version}" if dist is not None else "?"
        plugins.append(BrokerPlugin(ep.name, ep.value, label))
    return sorted(plugins, key=lambda p: p.scheme)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[2]}"))


def broker_from_url(url: str | None = None, **options: Any) -> Broker:
    """Build a broker from a URL, through the plugin registered for its scheme.

    Args:
        url: the broker URL; defaults to ``$CHUTE_BROKER_URL``, else the embedded SQLite
            file ``./chute.sqlite3``.
        options: passed to the plugin's factory.

    Raises:
        BrokerNotInstalled: no installed plugin serves the scheme; says what to install.
    """
    url = url or os.environ.get("CHUTE_BROKER_URL") or DEFAULT_BROKER_URL
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ConfigurationError(
            f"broker URL {redact_url(url)!r} has no scheme (expected e.g. redis://host:6379)"
        )
    found = list(importlib.metadata.entry_points(group=BROKER_GROUP, name=scheme))
    if not found:
        package = _SUGGESTIONS.get(scheme, f"chute-{scheme}")
        known = ", ".join(p.scheme for p in installed_brokers()) or "none"
        raise BrokerNotInstalled(
            f"no broker plugin for {scheme}:// URLs is installed (installed: {known}); "
            f'install one with: pip install "{package}"'
        )
    factory = cast(Callable[..., Broker], found[0].load())
    return factory(url, **options)


def store_plugin_for(url: str) -> bool:
    """Whether an installed plugin provides a store for ``url``'s scheme."""
    scheme = urlsplit(url).scheme.lower()
    return bool(list(importlib.metadata.entry_points(group=STORE_GROUP, name=scheme)))


def store_from_url(url: str) -> Store:
    """Build a store from a URL through the plugin registered for its scheme.

    Raises:
        ConfigurationError: no installed plugin provides a store for that scheme.
    """
    scheme = urlsplit(url).scheme.lower()
    found = list(importlib.metadata.entry_points(group=STORE_GROUP, name=scheme))
    if not found:
        known = sorted(ep.name for ep in importlib.metadata.entry_points(group=STORE_GROUP))
        raise ConfigurationError(
            f"no store plugin for {scheme}:// URLs is installed (stores: {', '.join(known)}); "
            "pass store= the URL of one of those, e.g. App(broker=..., store='redis://...')"
        )
    factory = cast(Callable[[str], Store], found[0].load())
    return factory(url)
