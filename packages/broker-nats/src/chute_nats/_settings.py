"""The broker's settings, read from the URL and keyword options, and the names derived from them.

Layout on the server, for namespace ``chute`` and queue ``mail``:

- stream ``CHUTE``, work-queue retention, subjects ``chute.q.>`` and ``chute.d.>``;
- ``chute.q.mail``: messages ready to run, read by the durable pull consumer ``q-mail``;
- ``chute.d.mail``: delayed messages, read by the durable pull consumer ``d-mail``, which
  moves each one to ``chute.q.mail`` when it is due;
- ``chute.c.mail``: the subject of core NATS mode (outside the stream, never stored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from chute.errors import BrokerError, ConfigurationError
from chute.plugins import redact_url

DEFAULT_URL = "nats://127.0.0.1:4222"

# Message headers chute sets. A message without them is a first delivery, published now.
ATTEMPTS = "Chute-Attempts"  # deliveries made before this copy was published
DUE = "Chute-Due"  # Unix time before which a delayed message must not be delivered
ORIGIN = "Chute-Id"  # the id of the message this one is a copy of
MSG_ID = "Nats-Msg-Id"  # JetStream's deduplication key

_QUEUE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_NAMESPACE = re.compile(r"[a-z][a-z0-9_-]*")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the URL and the keyword options decide."""

    url: str
    servers: list[str]
    jetstream: bool = True
    namespace: str = "chute"
    ack_wait: float = 30.0
    replicas: int = 1
    storage: str = "file"
    name: str = "chute"
    connect_timeout: float = 5.0
    request_timeout: float = 10.0

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    @property
    def stream(self) -> str:
        return self.namespace.upper()

    @property
    def stream_subjects(self) -> list[str]:
        return [f"{self.namespace}.q.>", f"{self.namespace}.d.>"]

    def ready_subject(self, queue: str) -> str:
        return f"{self.namespace}.q.{queue}"

    def delayed_subject(self, queue: str) -> str:
        return f"{self.namespace}.d.{queue}"

    def core_subject(self, queue: str) -> str:
        return f"{self.namespace}.c.{queue}"

    @property
    def lease_margin(self) -> float:
        """How long before the server's ack deadline this client stops trusting a lease.

        The client cannot see when the server started a delivery's ack timer, nor how long
        an ack takes to arrive; acting on a lease this close to its end could remove a copy
        the server has meanwhile handed to another consumer.
        """
        return min(max(0.25, self.ack_wait / 10), self.ack_wait / 2)


def check_queue(settings: Settings, queue: str) -> None:
    """Refuse queue names that are not a plain dot-separated NATS subject suffix.

    Raises:
        BrokerError: the name has characters outside ``A-Z a-z 0-9 _ -``, empty
            dot-separated parts, or is longer than 200 characters.
    """
    if len(queue) > 200 or not _QUEUE.fullmatch(queue):
        raise BrokerError(
            f"NATS at {settings.safe_url}: queue name {queue!r} is not allowed; use letters, "
            "digits, '_' and '-', in parts separated by single dots (e.g. 'mail' or "
            "'mail.bulk'), at most 200 characters"
        )


def consumer_name(kind: str, queue: str) -> str:
    """The durable consumer name for ``queue``: dots are not allowed there, so escape them.

    ``_`` becomes ``__`` and ``.`` becomes ``_d``, which keeps distinct queues distinct.
    """
    return f"{kind}-" + queue.replace("_", "__").replace(".", "_d")


_KINDS: dict[str, type[bool] | type[float] | type[int] | type[str]] = {
    "jetstream": bool,
    "namespace": str,
    "ack_wait": float,
    "replicas": int,
    "storage": str,
    "name": str,
    "connect_timeout": float,
    "request_timeout": float,
}


def _convert(key: str, value: Any) -> Any:
    kind = _KINDS.get(key)
    if kind is None:
        known = ", ".join(sorted(_KINDS))
        raise ConfigurationError(f"unknown NATS broker option {key!r} (known: {known})")
    if kind is str:
        return str(value)
    if kind is bool:
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in _TRUE | _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        raise ConfigurationError(f"NATS broker option {key}={value!r} is not a boolean")
    try:
        number = float(value) if kind is float else int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"NATS broker option {key}={value!r} is not a {kind.__name__}"
        ) from None
    if not number > 0:
        raise ConfigurationError(f"NATS broker option {key}={value!r} must be more than 0")
    return number


def parse(url: str, options: dict[str, Any]) -> Settings:
    """Read ``url`` (``nats://`` or ``tls://``, several hosts separated by commas) and options.

    Query parameters and keyword options name the same settings; keyword options win.

    Raises:
        ConfigurationError: a wrong scheme, an unknown option or a bad value.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("nats", "tls"):
        raise ConfigurationError(
            f"not a NATS URL: {redact_url(url)!r} (expected nats://host:4222 or tls://host:4222)"
        )
    given: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    given.update(options)
    values = {key: _convert(key, value) for key, value in given.items()}
    namespace = values.get("namespace", "chute")
    if not _NAMESPACE.fullmatch(namespace) or len(namespace) > 32:
        raise ConfigurationError(
            f"NATS broker namespace {namespace!r} must be lowercase letters, digits, '_' or "
            "'-', start with a letter, at most 32 characters"
        )
    values["storage"] = values.get("storage", "file").lower()
    if values["storage"] not in ("file", "memory"):
        raise ConfigurationError("NATS broker option storage must be 'file' or 'memory'")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    servers = [
        urlunsplit((scheme, prefix + host.strip(), "", "", ""))
        for host in (hosts or "127.0.0.1:4222").split(",")
        if host.strip()
    ]
    return Settings(url=url, servers=servers, **values)
