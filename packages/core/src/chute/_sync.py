"""The sync API's machinery: a private event loop in a thread, with its own connections."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import anyio.from_thread

from chute import _publish
from chute.broker import Broker
from chute.plugins import broker_from_url, store_from_url
from chute.store import Store
from chute.task import Call

if TYPE_CHECKING:
    from chute.app import App


class SyncBridge:
    """Runs enqueues for code that is not async, on a loop of its own.

    Connections are bound to the loop that opened them, so the bridge opens its own broker and
    store connections from the app's URLs (or uses the app's instances when it has no URL).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._broker: Broker | None = None
        self._store: Store | None = None

    def _ensure_portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None:
                cm = anyio.from_thread.start_blocking_portal()
                self._portal = cm.__enter__()
                self._portal_cm = cm
                atexit.register(self.close)
            return self._portal

    def send(self, calls: Sequence[Call[Any]]) -> list[str]:
        """Publish ``calls``; the job id each resolved to."""
        app = self.app

        async def send() -> list[str]:
            if self._broker is None:
                broker = broker_from_url(app.broker_url) if app.broker_url else app.broker
                await broker.__aenter__()
                self._broker = broker
            return await _publish.send(app, self._broker, self._connect_store, calls)

        return self._ensure_portal().call(send)

    async def _connect_store(self) -> Store:
        if self._store is None:
            store = self.app.require_store("this")
            if self.app.store_url is not None:
                store = store_from_url(self.app.store_url)
            await store.__aenter__()
            self._store = store
        return self._store

    def close(self) -> None:
        """Flush and close the connections and stop the thread, if they were started."""
        with self._lock:
            portal, cm = self._portal, self._portal_cm
            self._portal = self._portal_cm = None
        if portal is None or cm is None:
            return
        broker, self._broker = self._broker, None
        if broker is not None:
            portal.call(broker.__aexit__, None, None, None)
        store, self._store = self._store, None
        if store is not None:
            portal.call(store.__aexit__, None, None, None)
        cm.__exit__(None, None, None)
        atexit.unregister(self.close)
