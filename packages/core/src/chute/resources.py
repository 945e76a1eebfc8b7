"""Resources a worker builds once and hands to every task that asks: clients, pools."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar, cast

from chute._arguments import Injected

__all__ = ["use"]

T = TypeVar("T")

Factory = Callable[[], AsyncIterator[Any]] | Callable[[], AbstractAsyncContextManager[Any]]


class _Use(Injected):
    __slots__ = ("factory",)

    def __init__(self, factory: Factory) -> None:
        self.factory = factory

    def __repr__(self) -> str:
        return f"use({getattr(self.factory, '__qualname__', self.factory)!r})"


def use(
    factory: Callable[[], AsyncIterator[T]] | Callable[[], AbstractAsyncContextManager[T]],
) -> T:
    """Declare a task parameter the worker fills with a shared resource.

    ``factory`` is an async generator function that yields the resource once (code after the
    ``yield`` runs at worker shutdown), or a function returning an async context manager.
    Each worker process builds each resource once, before its first job, and shares it
    between all tasks that ask for it::

        async def http() -> AsyncIterator[httpx.AsyncClient]:
            async with httpx.AsyncClient() as client:
                yield client

        @app.task
        async def fetch(url: str, client: httpx.AsyncClient = chute.use(http)) -> int:
            return (await client.get(url)).status_code

    The parameter is not part of what producers pass. Calling the task inline, pass it
    yourself.
    """
    return cast(T, _Use(factory))


class Resources:
    """The resources of one worker process, keyed by factory."""

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}

    async def open(self, stack: AsyncExitStack, markers: Iterable[Injected]) -> None:
        """Build every resource named by ``markers``; ``stack`` tears them down."""
        for marker in markers:
            if not isinstance(marker, _Use) or marker.factory in self._values:
                continue
            factory = marker.factory
            if inspect.isasyncgenfunction(factory):
                manager = asynccontextmanager(factory)()
            else:
                manager = cast(AbstractAsyncContextManager[Any], factory())
            self._values[factory] = await stack.enter_async_context(manager)

    def values_for(self, injected: dict[str, Injected]) -> dict[str, Any]:
        """The keyword arguments that fill ``injected`` parameters."""
        return {
            name: self._values[marker.factory]
            for name, marker in injected.items()
            if isinstance(marker, _Use)
        }
