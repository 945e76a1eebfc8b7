"""chute: an async task queue with pluggable brokers and proven delivery guarantees."""

from chute.app import App
from chute.backoff import Backoff
from chute.broker import Ack, Broker, Capabilities, Delivery, Outgoing, QueueStats
from chute.errors import (
    ArgumentError,
    BrokerConfigConflict,
    BrokerError,
    BrokerNotInstalled,
    BrokerUnavailable,
    ChuteError,
    ConfigurationError,
    DecodeError,
    EnqueueError,
    JobFailed,
    MessageTooLarge,
    UnknownTaskError,
)
from chute.job import Job, JobInfo, current_job
from chute.resources import use
from chute.results import JobStatus
from chute.signals import Retry
from chute.store import Store
from chute.task import AsyncTask, Call, SyncTask, Task, TaskOptions, TaskRef
from chute.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "App",
    "ArgumentError",
    "AsyncTask",
    "Backoff",
    "Broker",
    "BrokerConfigConflict",
    "BrokerError",
    "BrokerNotInstalled",
    "BrokerUnavailable",
    "Call",
    "Capabilities",
    "ChuteError",
    "ConfigurationError",
    "DecodeError",
    "Delivery",
    "EnqueueError",
    "Job",
    "JobFailed",
    "JobInfo",
    "JobStatus",
    "MessageTooLarge",
    "Outgoing",
    "QueueStats",
    "Retry",
    "Store",
    "SyncTask",
    "Task",
    "TaskOptions",
    "TaskRef",
    "UnknownTaskError",
    "Worker",
    "__version__",
    "current_job",
    "use",
]
