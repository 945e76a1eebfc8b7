"""Run moto's server for the SQS tests, with two hot paths made cheap and one race closed.

moto computes every attribute of a queue (each an O(n) scan calling a slow datetime-based
clock per message) for every message it hands out, to check its retention period. With a few
thousand messages queued a single ReceiveMessage then takes seconds. This wrapper keeps the
arithmetic identical and only makes it cheaper: the clock reads ``time.time()``, and the
retention check reads the one attribute it needs.

moto also picks messages for concurrent ReceiveMessage calls (one server thread each) without
a lock, so two receives can both take the same visible message, which SQS does not do. Here
receives pick messages one at a time (a long poll's waiting still overlaps others').

Usage: ``python _sqs_moto.py -H 127.0.0.1 -p PORT`` (the arguments of ``moto.server``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import moto.server
import moto.sqs.models as sqs_models


def _unix_time(dt: Any = None) -> float:
    if dt is not None:
        return _original_unix_time(dt)
    return time.time()


def _unix_time_millis(dt: Any = None) -> float:
    return _unix_time(dt) * 1000.0


def _retained(self: Any, queue_name: str, message: Any) -> bool:
    period = int(self.get_queue(queue_name).message_retention_period)
    return period + message.sent_timestamp / 1000 > time.time()


_picking = threading.Lock()
_original_receive = sqs_models.SQSBackend.receive_message
_original_wait = sqs_models.Queue.wait_for_messages


def _receive(self: Any, *args: Any, **kwargs: Any) -> Any:
    with _picking:
        return _original_receive(self, *args, **kwargs)


def _wait(self: Any, timeout: int) -> None:
    _picking.release()
    try:
        _original_wait(self, timeout)
    finally:
        _picking.acquire()


_original_unix_time = sqs_models.unix_time
sqs_models.unix_time = _unix_time  # type: ignore[assignment]
sqs_models.unix_time_millis = _unix_time_millis  # type: ignore[assignment]
sqs_models.SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign]
sqs_models.SQSBackend.receive_message = _receive  # type: ignore[method-assign]
sqs_models.Queue.wait_for_messages = _wait  # type: ignore[method-assign]

if __name__ == "__main__":
    moto.server.main()
