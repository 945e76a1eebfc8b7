"""chute's Redis broker: ``App(broker="redis://localhost:6379/0")``.

See :class:`RedisBroker` for the options and ``docs/brokers/redis.md`` for the guarantees.
"""

from chute_redis.broker import RedisBroker
from chute_redis.store import RedisStore

__all__ = ["RedisBroker", "RedisStore"]
