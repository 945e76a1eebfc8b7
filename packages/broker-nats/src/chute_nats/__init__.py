"""chute's NATS broker: JetStream work queues, or core NATS queue groups.

``App(broker="nats://localhost:4222")`` finds it through its entry point; see
:class:`NatsBroker` for the URL options and ``docs/brokers/nats.md`` for the guarantees.
"""

from chute_nats.broker import NatsBroker
from chute_nats.store import NatsStore

__all__ = ["NatsBroker", "NatsStore"]
