"""The brokers that ship with core: in-memory and SQLite."""

from chute.brokers.memory import MemoryBroker
from chute.brokers.sqlite import SqliteBroker

__all__ = ["MemoryBroker", "SqliteBroker"]
