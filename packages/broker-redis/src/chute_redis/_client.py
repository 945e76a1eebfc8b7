"""The connection to Redis: client setup, script calls, server checks, error translation."""

from __future__ import annotations

import functools
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, cast
from urllib.parse import parse_qsl, urlencode

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py before 7
    MaintNotificationsConfig = None

from chute.errors import BrokerConfigConflict, BrokerError, BrokerUnavailable
from chute.plugins import redact_url
from chute_redis._scripts import SCRIPTS, Script

log = logging.getLogger("chute.redis")

MIN_VERSION = (6, 2)
"""LPOP with a count and ZMSCORE arrived in Redis 6.2."""

# Policies under which Redis may evict keys that have no TTL, such as every queue key.
EVICTING_POLICIES = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random"})

Arg = str | bytes | int | float
Client = aioredis.Redis | RedisCluster

OWN_OPTIONS = ("prefix", "cluster")
"""URL query options chute reads itself; the rest go to redis-py."""


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without chute's own query options, and those options."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    own = {k: v for k, v in pairs if k in OWN_OPTIONS}
    rest = urlencode([(k, v) for k, v in pairs if k not in OWN_OPTIONS])
    return (f"{base}?{rest}" if rest else base), own


def new_client_name() -> str:
    """A CLIENT SETNAME value that tells this broker instance's connections apart."""
    return f"chute:{os.getpid()}:{secrets.token_hex(4)}"


def make_client(
    url: str, *, cluster: bool, client_name: str, socket_timeout: float, connect_timeout: float
) -> Client:
    # No automatic retries: a script whose reply was lost may have run, and running a publish
    # again would store its messages twice. The broker retries only what is safe to repeat.
    # A pooled connection the server closed is replaced before use, without any retry.
    extra: dict[str, Any] = {}
    if MaintNotificationsConfig is not None:
        # With maintenance notifications on ("auto"), redis-py skips its check that a pooled
        # connection is still open before reusing it; a connection the server closed would
        # then fail the next command instead of being replaced.
        extra["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    if cluster:
        return RedisCluster.from_url(
            url,
            client_name=client_name,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            **extra,
        )
    pool: aioredis.ConnectionPool = aioredis.ConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]
        url,
        client_name=client_name,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        **extra,
    )
    return aioredis.Redis.from_pool(pool)


def fail(exc: BaseException, url: str, queue: str | None) -> NoReturn:
    """Raise ``exc``, a redis-py error, as chute's error, naming the URL and queue."""
    where = f"Redis at {redact_url(url)}" + (f", queue {queue!r}" if queue is not None else "")
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError):
        raise BrokerUnavailable(f"{where}: {exc}") from exc
    if "WRONGTYPE" in str(exc):
        raise BrokerConfigConflict(
            f"{where}: a key of this queue holds a value of another type, so something "
            f"other than chute uses the key names (choose another prefix): {exc}"
        ) from exc
    raise BrokerError(f"{where}: {exc}") from exc


@contextmanager
def translated(url: str, queue: str | None) -> Generator[None]:
    """Turn redis-py errors raised inside the block into chute's errors."""
    try:
        yield
    except (rex.RedisError, OSError) as exc:
        fail(exc, url, queue)


async def run_script(
    client: Client,
    script: Script,
    keys: Sequence[str],
    args: Sequence[Arg],
    send: Callable[[Sequence[Arg]], Awaitable[Any]] | None = None,
) -> Any:
    """``EVALSHA`` the script; on ``NOSCRIPT`` (a new, flushed or failed-over server) send
    it whole with ``EVAL``, which also caches it on the node that holds the keys. Safe to
    repeat: a script Redis did not know never ran.

    ``send``, when given, carries the command instead of the client (the publisher).
    """
    if send is not None:
        try:
            return await send(("EVALSHA", script.sha, len(keys), *keys, *args))
        except rex.NoScriptError:
            return await send(("EVAL", script.source, len(keys), *keys, *args))
    if isinstance(client, RedisCluster):
        if keys:
            await drop_closed_connections(client, keys[0])
        call: Any = client.execute_command
    else:
        call = functools.partial(_direct, client.connection_pool)
    try:
        return await call("EVALSHA", script.sha, len(keys), *keys, *args)
    except rex.NoScriptError:
        return await call("EVAL", script.source, len(keys), *keys, *args)


def pack(args: Sequence[Arg]) -> bytes:
    """A command in RESP, encoded as redis-py encodes arguments, in a fraction of its time."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


# Below asyncio's default write buffer high-water mark (64 KiB).
_SMALL_WRITE = 32 * 1024


async def _direct(pool: aioredis.ConnectionPool, *args: Arg) -> Any:
    """One command on a pooled connection, without the client's retry and instrumentation
    layers: the same pool checks (a connection the server closed is replaced before use),
    at half the cost per call, which single-job enqueues feel."""
    connection: Any = await pool.get_connection()
    timeout = connection.socket_timeout
    packed = pack(args)
    try:
        # A command that fits in the transport's buffer is written without waiting, so it
        # needs no send timeout, and redis-py would spend a task per write enforcing one.
        # The reply still waits at most socket_timeout.
        if len(packed) < _SMALL_WRITE:
            connection.socket_timeout = None
        # Both calls disconnect on any failure, so no half-read reply stays in the pool.
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response(timeout=timeout)
    finally:
        connection.socket_timeout = timeout
        await pool.release(connection)


async def drop_closed_connections(client: RedisCluster, key: str) -> None:
    """Disconnect the idle connections to ``key``'s node that the server already closed.

    redis-py's single-server pool does this before every command; its cluster client does
    not, so a command would otherwise be sent on a dead connection and fail, and a failed
    publish cannot be repeated safely. The next command on a dropped connection reconnects.
    """
    node: Any = client.get_node_from_key(key)
    free: tuple[Any, ...] = tuple(getattr(node, "_free", ()))
    for connection in free:
        reader = getattr(connection, "_reader", None)
        if reader is not None and reader.at_eof():
            await connection.disconnect()


def _field(info: Any, name: str) -> str:
    if not isinstance(info, dict):
        return ""
    return str(cast(dict[str, Any], info).get(name, ""))


async def check_server(client: Client, url: str) -> None:
    """Check the server version, load the scripts, warn if eviction can lose jobs.

    Raises:
        BrokerUnavailable: the server does not answer.
        BrokerError: the server is older than Redis 6.2.
    """
    call: Any = client.execute_command  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    with translated(url, None):
        # On a cluster INFO answers from one node, and scripts load on first use per node.
        server = await call("INFO", "server")
        memory = await call("INFO", "memory")
        if not isinstance(client, RedisCluster):
            async with client.pipeline(transaction=False) as pipe:
                for script in SCRIPTS:
                    pipe.execute_command("SCRIPT", "LOAD", script.source)  # pyright: ignore[reportUnknownMemberType]
                await pipe.execute()
    version = _field(server, "redis_version")
    try:
        numbers = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        numbers = MIN_VERSION
    if numbers < MIN_VERSION:
        raise BrokerError(
            f"Redis at {redact_url(url)} is version {version}; chute-redis needs Redis "
            f"{'.'.join(map(str, MIN_VERSION))} or later"
        )
    policy = _field(memory, "maxmemory_policy")
    if policy in EVICTING_POLICIES:
        log.warning(
            "Redis at %s has maxmemory-policy %s: under memory pressure it evicts keys, "
            "and an evicted queue key loses its jobs without any error. "
            "Set maxmemory-policy to noeviction (or a volatile-* policy) for queues.",
            redact_url(url),
            policy,
        )
