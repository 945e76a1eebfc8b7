"""The broker's settings: parsed from an ``sqs://`` URL, then overridden by keyword options.

Also the mapping from chute queue names to SQS queue names, which must be reversible: SQS
allows only ``[A-Za-z0-9_-]`` (plus a ``.fifo`` suffix), 80 characters at most, while chute
names may hold dots (every dead-letter queue is ``<queue>.dead``) or any other character.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chute.errors import ConfigurationError
from chute.plugins import redact_url

__all__ = ["FIFO_SUFFIX", "SqsOptions", "chute_name", "is_fifo", "sqs_name"]

FIFO_SUFFIX = ".fifo"
_MAX_NAME = 80
_SAFE = re.compile(r"[A-Za-z0-9-]")
_PREFIX = re.compile(r"[A-Za-z0-9_-]*")
# 12 hours, the longest visibility timeout SQS grants for one receive.
MAX_VISIBILITY = 43200


@dataclass(frozen=True, slots=True)
class SqsOptions:
    """Everything an :class:`~chute_sqs.SqsBroker` can be told; see ``docs/brokers/sqs.md``."""

    region: str | None = None
    endpoint: str | None = None
    profile: str | None = None
    prefix: str = "chute-"
    wait: int = 5
    receivers: int = 4
    create: bool = True
    retention: int = 1_209_600
    max_message_size: int = 262_144
    group: str = "chute"

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError(
                f"SQS queue name prefix {self.prefix!r} may hold only letters, digits, '-' and '_'"
            )
        if not 0 <= self.wait <= 20:
            raise ConfigurationError(f"SQS wait must be 0..20 seconds, not {self.wait}")
        if not 1 <= self.receivers <= 32:
            raise ConfigurationError(f"SQS receivers must be 1..32, not {self.receivers}")
        if not 60 <= self.retention <= 1_209_600:
            raise ConfigurationError(
                f"SQS retention must be 60..1209600 seconds, not {self.retention}"
            )
        if not 1024 <= self.max_message_size <= 1_048_576:
            raise ConfigurationError(
                f"SQS max_message_size must be 1024..1048576 bytes, not {self.max_message_size}"
            )
        if not re.fullmatch(r"[!-~]{1,128}", self.group):
            raise ConfigurationError(
                f"SQS FIFO group {self.group!r} must be 1..128 printable ASCII characters"
            )

    @classmethod
    def parse(cls, url: str, overrides: dict[str, Any]) -> SqsOptions:
        """Options from ``sqs://?name=value&...``, with ``overrides`` taking precedence."""
        parts = urlsplit(url)
        if parts.scheme != "sqs":
            raise ConfigurationError(f"not an sqs:// URL: {redact_url(url)!r}")
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"SQS URL {redact_url(url)!r}: put everything in the query string, e.g. "
                "sqs://?region=us-east-1&endpoint=http://127.0.0.1:9324"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        given: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        given.update(overrides)
        values: dict[str, Any] = {}
        for name, raw in given.items():
            field = fields.get(name)
            if field is None:
                known = ", ".join(sorted(fields))
                raise ConfigurationError(f"unknown SQS broker option {name!r} (known: {known})")
            values[name] = _convert(name, raw, field.default)
        return cls(**values)


def _convert(name: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, str) or isinstance(default, str) or default is None:
        return raw
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"SQS broker option {name}={raw!r} is not valid") from None


def is_fifo(queue: str) -> bool:
    """Whether the chute queue ``queue`` maps to an SQS FIFO queue (its name ends in .fifo)."""
    return queue.endswith(FIFO_SUFFIX) and len(queue) > len(FIFO_SUFFIX)


def sqs_name(queue: str, prefix: str) -> str:
    """The SQS queue name for the chute queue ``queue``.

    Letters, digits and ``-`` stay; every other character becomes ``_`` and the two hex digits
    of each of its UTF-8 bytes (``.`` is ``_2e``, ``_`` is ``_5f``). A trailing ``.fifo`` is
    kept as is and makes a FIFO queue. The prefix comes first.

    Raises:
        ConfigurationError: the result is longer than the 80 characters SQS allows.
    """
    fifo = is_fifo(queue)
    base = queue[: -len(FIFO_SUFFIX)] if fifo else queue
    out = [prefix]
    for char in base:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode())
    if fifo:
        out.append(FIFO_SUFFIX)
    name = "".join(out)
    if not base or len(name) > _MAX_NAME:
        raise ConfigurationError(
            f"queue {queue!r} maps to the SQS name {name!r}, which is empty or longer than the "
            f"{_MAX_NAME} characters SQS allows; use a shorter queue name or prefix"
        )
    return name


def chute_name(name: str, prefix: str) -> str | None:
    """The chute queue whose SQS name is ``name``; ``None`` if it is not one of chute's."""
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    fifo = rest.endswith(FIFO_SUFFIX)
    if fifo:
        rest = rest[: -len(FIFO_SUFFIX)]
    raw = bytearray()
    i = 0
    try:
        while i < len(rest):
            if rest[i] == "_":
                pair = rest[i + 1 : i + 3]
                if not re.fullmatch(r"[0-9a-f]{2}", pair):
                    return None
                raw.append(int(pair, 16))
                i += 3
            else:
                raw += rest[i].encode()
                i += 1
        queue = raw.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return queue + FIFO_SUFFIX if fifo else queue
