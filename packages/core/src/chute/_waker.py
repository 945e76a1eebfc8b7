"""A broadcast wake-up signal for tasks that wait for "something may have changed"."""

from __future__ import annotations

import math

import anyio


class Waker:
    """Wakes every current waiter on :meth:`notify`; later waiters wait for the next one.

    Unlike a bare ``anyio.Event``, it can be fired any number of times, and a waiter that
    arrives after a notification is not woken by it.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float = math.inf) -> bool:
        """Wait for the next :meth:`notify`, at most ``timeout`` seconds; ``True`` if woken."""
        if self._event is None:
            self._event = anyio.Event()
        event = self._event
        if timeout <= 0:
            return False
        with anyio.move_on_after(timeout):
            await event.wait()
            return True
        return False
