"""An SQS endpoint for the tests: ``$CHUTE_TEST_SQS_URL``, else a moto server started here.

moto runs in server mode as a subprocess on a free loopback port for the whole session, so
consumers in child processes (the conformance suite's crash tests) reach the same queues.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from _sqs_proxy import CuttableProxy

from chute.testing.servers import reachable
from chute_sqs import SqsBroker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so a missing server is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqs_url() -> Iterator[str]:
    given = os.environ.get("CHUTE_TEST_SQS_URL")
    if given:
        yield given
        return
    try:
        import moto.server  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        _missing("SQS: $CHUTE_TEST_SQS_URL is not set and moto[server] is not installed")
    # Fake credentials: moto accepts any, and nothing here may reach real AWS.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("_sqs_moto.py")),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not reachable(endpoint, timeout=0.5):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    _missing(f"SQS: the moto server did not start: {log.read()[-2000:]}")
                time.sleep(0.1)
            yield f"sqs://?region=us-east-1&endpoint={endpoint}&prefix=chute-test-&wait=1"
        finally:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


DeleteQueues = Callable[[list[str]], Awaitable[None]]


@pytest.fixture(scope="session")
def delete_queues(sqs_url: str) -> DeleteQueues:
    """``await delete_queues([...])``: delete the SQS queues behind these chute queues."""

    async def delete(queues: list[str]) -> None:
        await _delete_queues(sqs_url, queues)

    return delete


async def _delete_queues(url: str, queues: list[str]) -> None:
    broker = SqsBroker(url)
    async with broker:
        client = broker._client  # pyright: ignore[reportPrivateUsage]
        for queue in queues:
            found = await client.url(queue, create=False)
            if found is not None:
                with suppress(Exception):
                    await client.call(queue, "delete_queue", QueueUrl=found)


@pytest.fixture(scope="session")
def sqs_proxy(sqs_url: str) -> Iterator[tuple[str, CuttableProxy] | None]:
    """``(url, proxy)``: the endpoint behind a proxy that can cut connections; ``None`` when
    the endpoint is not plain HTTP on this machine."""
    parts = urlsplit(sqs_url)
    query = dict(parse_qsl(parts.query))
    endpoint = urlsplit(query.get("endpoint", ""))
    if endpoint.scheme != "http" or endpoint.hostname not in ("127.0.0.1", "localhost"):
        yield None
        return
    proxy = CuttableProxy((endpoint.hostname, endpoint.port or 80))
    query["endpoint"] = f"http://127.0.0.1:{proxy.port}"
    try:
        yield urlunsplit(parts._replace(query=urlencode(query, safe=":/"))), proxy
    finally:
        proxy.close()
