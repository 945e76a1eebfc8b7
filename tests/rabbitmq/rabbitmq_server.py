"""Acting on the RabbitMQ server from outside the broker under test: cuts, cleanup, options."""

from __future__ import annotations

import re
import shutil
import subprocess

import aio_pika
import anyio
import anyio.to_thread
import pytest

from chute_rabbitmq import RabbitBroker
from chute_rabbitmq._topology import LEVELS, level_queue

# RabbitMQ's default consumer_timeout (30 min), stated to chute as servers before 3.11.15
# require: they cannot lift it per consumer.
SERVER_CONSUMER_TIMEOUT = 1800


def with_options(url: str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return url + ("&" if "?" in url else "?") + query


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` on this machine; skip the test when it is not available."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not available to act on the server from outside")
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl {args[0]} failed (not allowed here?): {done.stderr.strip()}")
    return done.stdout


async def cut(broker: RabbitBroker) -> None:
    """Close ``broker``'s connection from the server side and wait until the client sees it."""
    name = broker.link.name
    with anyio.fail_after(30):  # after an earlier cut, the consumers reconnect by themselves
        while not broker.link.alive():
            await anyio.sleep(0.01)
    before = broker.link.current()
    assert before is not None
    listing = await anyio.to_thread.run_sync(rabbitmqctl, "list_connections", "pid",
                                             "client_properties")  # fmt: skip
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if re.search(r'\{"connection_name","' + re.escape(name) + r'"\}', line)
    ]
    assert pids, f"no server connection named {name}"
    for pid in pids:
        await anyio.to_thread.run_sync(rabbitmqctl, "close_connection", pid, "chute test cut")
    with anyio.fail_after(30):
        while not before.is_closed:
            await anyio.sleep(0.01)


async def delete_queues(url: str, queues: list[str]) -> None:
    """Delete ``queues`` and their delay ladders."""
    conn = await aio_pika.connect(url.split("?", 1)[0])
    try:
        channel = await conn.channel()
        for queue in queues:
            for name in [queue, *(level_queue(queue, k) for k in range(LEVELS))]:
                await channel.queue_delete(name)
    finally:
        await conn.close()
