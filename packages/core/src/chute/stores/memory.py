"""A store inside this process, for tests and for apps on the memory broker."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

import anyio.lowlevel

from chute._waker import Waker

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keys with expiry in a dict; :meth:`wait` is woken by writes, no polling.

    Args:
        url: accepted for symmetry (``memory://``); ignored.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._data: dict[str, tuple[bytes, float]] = {}
        self._changed = Waker()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: bytes, ttl: float | None) -> None:
        expires = float("inf") if ttl is None else time.monotonic() + ttl
        self._data[key] = (value, expires)
        self._changed.notify()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await anyio.lowlevel.checkpoint()
        self._put(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        await anyio.lowlevel.checkpoint()
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def get(self, key: str) -> bytes | None:
        await anyio.lowlevel.checkpoint()
        return self._live(key)

    async def delete(self, key: str, *, value: bytes | None = None) -> bool:
        await anyio.lowlevel.checkpoint()
        current = self._live(key)
        if current is None or (value is not None and current != value):
            return False
        del self._data[key]
        return True

    async def wait(self, key: str, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while (value := self._live(key)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await self._changed.wait(remaining)
        return value
