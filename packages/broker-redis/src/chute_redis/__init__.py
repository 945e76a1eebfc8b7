"""chute's Redis broker: ``App(broker="redis://localhost:6379/0")``.

See :class:`RedisBroker` for the options and ``docs/brokers/redis.md`` for the guarantees.
"""

from chute_redis.broker import RedisBroker

__all__ = ["RedisBroker"]
