"""A consumer program for the conformance suite's crash and pause tests.

Run as ``python -m chute.testing._consumer --url ... --queue ...``. It reports every event as
one JSON line on stdout, so the test knows exactly what it held when it was killed.

Modes:
    hold   take deliveries and never settle them (until killed)
    ack    ack every delivery; with ``--die-on`` kill itself on that body instead, and with
           ``--limit`` dead-letter a message delivered more than that many times (as the
           worker does), so a poison message ends after the limit
    stdin  settle on command: one line per command, ``ack ID`` or ``release ID``
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from chute.broker import Ack, Broker, Delivery, Outgoing, dead_queue


def _say(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _load(path: str) -> Callable[[str], Broker]:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


async def _main(ns: argparse.Namespace) -> None:
    broker = _load(ns.factory)(ns.url)
    ack = Ack(ns.ack)
    held: dict[str, Delivery] = {}
    async with (
        broker,
        broker.consume(ns.queue, ack=ack, prefetch=ns.prefetch, lease=ns.lease) as deliveries,
        anyio.create_task_group() as tg,
    ):
        if ns.mode == "stdin":
            tg.start_soon(_commands, held)
        _say("ready", pid=os.getpid())
        async for delivery in deliveries:
            body = delivery.body.hex()
            _say("got", id=delivery.id, body=body, attempt=delivery.attempt)
            if ns.mode in ("hold", "stdin"):
                held[delivery.id] = delivery
            elif (
                ns.die_on is not None
                and body == ns.die_on
                and (ns.limit is None or delivery.attempt <= ns.limit)
            ):
                _say("dying", attempt=delivery.attempt)
                os.kill(os.getpid(), signal.SIGKILL)
            elif ns.limit is not None and delivery.attempt > ns.limit:
                await broker.publish(dead_queue(ns.queue), [Outgoing(delivery.body)])
                await delivery.ack()
                _say("dead", id=delivery.id, body=body, attempt=delivery.attempt)
            else:
                await delivery.ack()
                _say("acked", id=delivery.id, body=body, attempt=delivery.attempt)


async def _commands(held: dict[str, Delivery]) -> None:
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            return
        command, _, msg_id = line.strip().partition(" ")
        delivery = held.pop(msg_id, None)
        if delivery is None:
            _say("unknown", id=msg_id)
        elif command == "ack":
            try:
                await delivery.ack()
            except Exception as exc:
                _say("ack-failed", id=msg_id, error=repr(exc))
            else:
                _say("acked", id=msg_id)
        elif command == "release":
            await delivery.release()
            _say("released", id=msg_id)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chute.testing._consumer")
    parser.add_argument("--factory", default="chute.plugins:broker_from_url")
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--ack", default=Ack.ON_COMPLETION.value)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--mode", choices=["hold", "ack", "stdin"], default="ack")
    parser.add_argument("--die-on", default=None, help="hex body that makes it kill itself")
    parser.add_argument("--limit", type=int, default=None)
    anyio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
