"""chute's RabbitMQ broker: ``App(broker="amqp://guest:guest@localhost:5672/")``.

Quorum queues count deliveries on the server, publisher confirms make a returned publish a
stored one, and a ladder of fixed-delay queues holds delayed messages on a stock server.
"""

from chute_rabbitmq._broker import RabbitBroker
from chute_rabbitmq._consumer import RabbitDelivery

__all__ = ["RabbitBroker", "RabbitDelivery"]
