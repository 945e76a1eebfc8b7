"""What a chute message looks like inside SQS: a text body and a few message attributes.

SQS bodies are text (a subset of Unicode), so bytes travel base64-encoded behind a one-letter
format tag. A message published by chute carries no attributes. A copy that the broker sends
in place of a received message (see :mod:`chute_sqs._consumer`) carries:

- ``chute-base``: added to SQS's ``ApproximateReceiveCount`` to give ``attempt``, so a copy
  continues the count of the message it replaces;
- ``chute-id``: the first message's SQS id, so ``Delivery.id`` is stable across copies;
- ``chute-due``: Unix time before which the copy must not be handed out (delays longer than
  the 15 minutes SQS holds natively).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ATTRIBUTE_RESERVE",
    "MAX_NATIVE_DELAY",
    "Received",
    "copy_attributes",
    "decode_body",
    "encode_body",
    "entry_size",
    "max_body",
    "parse_message",
    "whole_seconds",
]

_TAG = "b"
BASE = "chute-base"
ID = "chute-id"
DUE = "chute-due"
# Bytes kept free in every message for the attributes of a copy (names, types and values of
# the three above come to well under 150).
ATTRIBUTE_RESERVE = 256
MAX_NATIVE_DELAY = 900


def max_body(max_message_size: int) -> int:
    """The largest body in bytes that fits, encoded and with a copy's attributes, in SQS."""
    return (max_message_size - ATTRIBUTE_RESERVE - len(_TAG)) // 4 * 3


def whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to whole seconds, as SQS counts them: never early."""
    return max(0, math.ceil(seconds - 1e-9))


def encode_body(body: bytes) -> str:
    return _TAG + base64.b64encode(body).decode("ascii")


def decode_body(text: str) -> bytes:
    """The bytes of a body; a body chute did not write is delivered as its UTF-8 text."""
    if text.startswith(_TAG):
        try:
            return base64.b64decode(text[len(_TAG) :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return text.encode()


def copy_attributes(base: int, message_id: str, due: float | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        BASE: {"DataType": "Number", "StringValue": str(base)},
        ID: {"DataType": "String", "StringValue": message_id},
    }
    if due is not None:
        attributes[DUE] = {"DataType": "Number", "StringValue": repr(due)}
    return attributes


def entry_size(text: str, attributes: dict[str, Any]) -> int:
    """The size SQS counts for a message: body plus attribute names, types and values."""
    size = len(text.encode())
    for name, value in attributes.items():
        size += len(name) + len(value["DataType"]) + len(value["StringValue"].encode())
    return size


@dataclass(frozen=True, slots=True)
class Received:
    """One message as ReceiveMessage returned it, decoded.

    Attributes:
        handle: the receipt handle of this receive.
        id: the stable id (the first message's SQS id).
        body: the bytes published.
        attempt: ``chute-base`` plus SQS's receive count.
        base: the ``chute-base`` it carried (0 for a message as published).
        due: the ``chute-due`` it carried, if any.
    """

    handle: str
    id: str
    body: bytes
    attempt: int
    base: int
    due: float | None


def _attribute(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, dict):
        text = value.get("StringValue")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(text, str):
            return text
    return None


def parse_message(message: dict[str, Any]) -> Received:
    attributes: dict[str, Any] = message.get("MessageAttributes") or {}
    base_text = _attribute(attributes, BASE)
    due_text = _attribute(attributes, DUE)
    try:
        base = int(base_text) if base_text is not None else 0
        due = float(due_text) if due_text is not None else None
    except ValueError:
        base, due = 0, None
    count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    return Received(
        handle=message["ReceiptHandle"],
        id=_attribute(attributes, ID) or message["MessageId"],
        body=decode_body(message.get("Body", "")),
        attempt=base + count,
        base=base,
        due=due,
    )
