"""chute's Amazon SQS broker: ``App(broker="sqs://?region=us-east-1")``.

See :class:`SqsBroker` for the URL options and ``docs/brokers/sqs.md`` for the guarantees.
"""

from chute_sqs._options import chute_name, sqs_name
from chute_sqs.broker import SqsBroker

__all__ = ["SqsBroker", "chute_name", "sqs_name"]
