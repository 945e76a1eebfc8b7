"""chute's store on Redis: results, unique-job keys and cron slots.

Each key is one Redis string, ``<prefix>:kv:<key>``, with Redis's own expiry. ``add`` is
``SET NX``; the conditional delete and every write run as small scripts that also publish the
key's name on ``<prefix>:kv-set``, so :meth:`RedisStore.wait` learns of a write at once through
pub/sub instead of polling (on a cluster, where the client has no pub/sub, it polls).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Self

import anyio
from redis.asyncio.cluster import RedisCluster

from chute.errors import BrokerError, ConfigurationError
from chute.plugins import redact_url
from chute_redis._client import (
    Client,
    check_server,
    make_client,
    new_client_name,
    run_script,
    split_url,
    translated,
)
from chute_redis._scripts import Script

__all__ = ["RedisStore"]

_SET = Script(
    "store_set",
    """
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], KEYS[1])
return 1
""",
)

_ADD = Script(
    "store_add",
    """
local done
if ARGV[2] == '' then
  done = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  done = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if done then
  redis.call('PUBLISH', ARGV[3], KEYS[1])
  return 1
end
return 0
""",
)

_DELETE_IF = Script(
    "store_delete_if",
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""",
)

# How often wait() polls when it cannot subscribe (a cluster), backing off to the second.
_POLL_MIN = 0.01
_POLL_MAX = 0.2


def _ms(ttl: float | None) -> str:
    return "" if ttl is None else str(max(1, round(ttl * 1000)))


class RedisStore:
    """A store on a Redis server or cluster.

    Args:
        url: a Redis URL as for :class:`chute_redis.RedisBroker` (``prefix`` and ``cluster``
            query options included).
        prefix: the key prefix (the URL's ``prefix`` wins); keys are ``<prefix>:kv:<key>``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "chute",
        cluster: bool = False,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        base, own = split_url(url)
        if not base.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(f"not a Redis URL: {redact_url(url)!r}")
        self.prefix = own.get("prefix") or prefix
        self.cluster = cluster or own.get("cluster", "").lower() in ("1", "true", "yes")
        self._base_url = base
        self._timeouts = (socket_timeout, connect_timeout)
        self._client: Client | None = None
        self.channel = f"{self.prefix}:kv-set"

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r})"

    async def __aenter__(self) -> Self:
        if self._client is None:
            client = make_client(
                self._base_url,
                cluster=self.cluster,
                client_name=new_client_name(),
                socket_timeout=self._timeouts[0],
                connect_timeout=self._timeouts[1],
            )
            try:
                await check_server(client, self.url)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
                raise
            self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise BrokerError(f"{self!r} is not connected (use `async with`)")
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}:kv:{key}"

    async def _script(self, script: Script, key: str, *args: str | bytes) -> Any:
        with translated(self.url, None):
            return await run_script(self.client, script, [self._key(key)], [*args, self.channel])

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._script(_SET, key, value, _ms(ttl))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        return bool(await self._script(_ADD, key, value, _ms(ttl)))

    async def get(self, key: str) -> bytes | None:
        call: Any = self.client.execute_command  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        with translated(self.url, None):
            value = await call("GET", self._key(key))
        return None if value is None else bytes(value)

    async def delete(self, key: str, *, value: bytes | None = None) -> bool:
        if value is not None:
            return bool(await self._script(_DELETE_IF, key, value))
        call: Any = self.client.execute_command  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        with translated(self.url, None):
            return bool(await call("DEL", self._key(key)))

    async def wait(self, key: str, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        client = self.client
        if isinstance(client, RedisCluster):
            return await self._poll(key, deadline)
        wanted = self._key(key).encode()
        with translated(self.url, None):
            pubsub: Any = client.pubsub()  # pyright: ignore[reportUnknownMemberType]
            try:
                # Subscribed before reading, so a write in between is not missed.
                await pubsub.subscribe(self.channel)
                while (value := await self.get(key)) is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    while remaining > 0:
                        message: Any = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=min(remaining, 1.0)
                        )
                        if message is not None and message.get("data") == wanted:
                            break
                        remaining = deadline - time.monotonic()
                return value
            finally:
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()

    async def _poll(self, key: str, deadline: float) -> bytes | None:
        poll = _POLL_MIN
        while (value := await self.get(key)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await anyio.sleep(min(poll, remaining))
            poll = min(poll * 2, _POLL_MAX)
        return value
