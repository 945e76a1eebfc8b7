"""The stores that ship with core: in-memory and SQLite."""

from chute.stores.memory import MemoryStore
from chute.stores.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore"]
