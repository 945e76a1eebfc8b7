"""The hand-written RESP encoder sends exactly what redis-py would."""

from __future__ import annotations

import pytest
import redis.asyncio.connection as rc

from chute_redis._client import pack

pytestmark = pytest.mark.redis


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "ab12", 3, "k1", "k2", "k3", b"\x00\xff\r\n", ""),
        ("SET", "x", 1.5, 0.1 + 0.2, -3, 10**20, b""),
        ("PING",),
    ],
)
def test_pack_matches_redis_py(args: tuple[str | bytes | int | float, ...]) -> None:
    assert pack(args) == b"".join(rc.Connection().pack_command(*args))
