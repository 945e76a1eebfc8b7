"""Translating driver and server errors into chute's, naming the URL, queue and action."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from chute.errors import BrokerError, BrokerUnavailable

_UNAVAILABLE = (
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    asyncio.TimeoutError,
    OSError,
)


class ApiError(Exception):
    """An error answer from the JetStream API."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class NoStream(Exception):
    """A stored publish found no stream listening on its subject."""


@contextmanager
def translate(where: str, action: str) -> Generator[None]:
    """Turn driver errors into :class:`BrokerUnavailable` or :class:`BrokerError`."""
    try:
        yield
    except BrokerError:
        raise
    except _UNAVAILABLE as exc:
        raise BrokerUnavailable(f"{where}: {action} failed: {describe(exc)}") from exc
    except (nats.errors.Error, ApiError, NoStream) as exc:
        raise BrokerError(f"{where}: {action} failed: {describe(exc)}") from exc


def api_error(answer: dict[str, Any]) -> ApiError | None:
    error = answer.get("error")
    if error is None:
        return None
    return ApiError(error.get("code", 0), error.get("err_code", 0), error.get("description", "?"))


def check_pub_ack(msg: Msg) -> None:
    """Raise unless ``msg`` is a stream's confirmation that it stored a message.

    Raises:
        NoStream: the server says no stream listens on the subject (503, no responders).
        ApiError: the stream refused the message.
    """
    if not msg.data:
        status = (msg.headers or {}).get("Status", "")
        if status == "503":
            raise NoStream(msg.subject)
        raise ApiError(int(status) if status.isdigit() else 0, 0, "empty publish acknowledgement")
    error = api_error(json.loads(msg.data))
    if error is not None:
        raise error


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
