"""Finding a server for tests: the environment, the usual local port, or a throwaway container.

Under ``CI`` (the environment variable set to anything non-empty) a server that cannot be
found fails the test run instead of skipping it, so a broker's tests never vanish quietly.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from chute.plugins import redact_url

__all__ = ["reachable", "server_url"]


def reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port
    except ValueError:
        return False
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if shutil.which("docker") is None and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        docker.from_env().ping()  # pyright: ignore[reportUnknownMemberType]
    except Exception:
        return False
    return True


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so a missing server is a failure)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def server_url(
    name: str,
    *,
    env: str,
    default: str,
    image: str | None = None,
    port: int | None = None,
    template: str = "{scheme}://{host}:{port}",
) -> Generator[str, None, None]:
    """Yield a URL for a ``name`` server, in this order of preference.

    1. ``$env``, if set (it must answer);
    2. ``default``, the usual local address, if something listens there;
    3. a container of ``image`` started through testcontainers, when a Docker engine
       answers, reached through ``template`` (``{scheme}``, ``{host}``, ``{port}``);
    4. otherwise skip, or fail under ``CI``, saying why.

    Use it in a session-scoped fixture::

        @pytest.fixture(scope="session")
        def redis_url() -> Generator[str, None, None]:
            with server_url("Redis", env="CHUTE_TEST_REDIS_URL",
                            default="redis://127.0.0.1:6379", image="redis:7", port=6379) as url:
                yield url
    """
    given = os.environ.get(env)
    if given:
        if not reachable(given):
            _missing(f"{name}: ${env}={redact_url(given)} does not answer")
        yield given
        return
    if reachable(default):
        yield default
        return
    if image is not None and port is not None and _docker_available():
        # Optional: only machines with a Docker engine need testcontainers installed.
        containers: Any = importlib.import_module("testcontainers.core.container")
        container: Any = containers.DockerContainer(image).with_exposed_ports(port)
        with container:
            host: str = container.get_container_host_ip()
            mapped: int = container.get_exposed_port(port)
            url = template.format(scheme=urlsplit(default).scheme, host=host, port=mapped)
            deadline = time.monotonic() + 60
            while not reachable(url) and time.monotonic() < deadline:
                time.sleep(0.2)
            yield url
        return
    _missing(
        f"{name}: nothing answers at {redact_url(default)}, ${env} is not set, and no Docker "
        "engine is available for testcontainers"
    )
