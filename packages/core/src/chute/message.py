"""The envelope: what chute puts in a broker message's body.

msgpack on the wire, through msgspec; never pickle. The arguments travel as raw msgpack so the
worker can decode them straight into the task's hinted types.
"""

from __future__ import annotations

import os
import time

import msgspec

from chute.errors import DecodeError

__all__ = ["EMPTY", "Envelope", "decode_envelope", "encode_envelope", "new_job_id"]


EMPTY = msgspec.Raw()
"""The absent value of a raw field; always this object, so ``omit_defaults`` leaves it out."""


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One job as it travels through a broker.

    Attributes:
        id: the job id, unique per enqueue.
        task: the registered task name.
        queue: the queue it was enqueued on.
        params: the arguments bound to the task's parameters by name (msgpack map), when the
            producer knew the task's signature; empty otherwise.
        args: positional arguments (msgpack array), when it did not; may be empty.
        kwargs: keyword arguments (msgpack map), when it did not; may be empty.
        enqueued_at: Unix time of the enqueue.
        not_before: Unix time before which the job must not start, for delays longer than the
            broker holds natively; ``None`` when the broker holds the whole delay.
        key: the unique-job key, if any.
        headers: free-form text metadata; dead letters carry ``error``, ``traceback`` and
            ``reason`` here.
        original: for an undecodable message sent to the dead-letter queue, its exact body.
    """

    id: str
    task: str
    queue: str
    params: msgspec.Raw = EMPTY
    args: msgspec.Raw = EMPTY
    kwargs: msgspec.Raw = EMPTY
    enqueued_at: float = 0.0
    not_before: float | None = None
    key: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict[str, str])
    original: bytes | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    """The envelope's wire form."""
    return _encoder.encode(envelope)


def decode_envelope(body: bytes) -> Envelope:
    """Parse a message body.

    Raises:
        DecodeError: the body is not a chute envelope; the message says why.
    """
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not a chute envelope ({len(body)} bytes): {exc}") from None


def new_job_id() -> str:
    """A 26-hex-digit id that sorts by creation time (to the millisecond) across processes."""
    return f"{int(time.time() * 1000):011x}{os.urandom(8).hex()[:15]}"
