"""chute's errors, all under one root.

The tree::

    ChuteError
    ├── ConfigurationError       the app, a task or the command line is set up wrongly
    │   ├── BrokerNotInstalled   no installed plugin serves a URL scheme
    │   └── UnknownTaskError     a task name nobody registered
    ├── EnqueueError             a job could not be enqueued as asked
    │   ├── ArgumentError        an argument does not fit the task's signature or type hints
    │   └── MessageTooLarge      the encoded job exceeds the broker's size limit
    ├── BrokerError              the broker failed; names the URL (never the password) and queue
    │   ├── BrokerUnavailable    the broker could not be reached
    │   └── BrokerConfigConflict something already on the server disagrees with the settings
    ├── DecodeError              a message body is not a chute envelope (it is dead-lettered)
    └── JobFailed                a job failed for good; carries the remote error and traceback

Flow-control signals such as :class:`chute.Retry` are not errors and do not inherit from
:class:`ChuteError`.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "BrokerConfigConflict",
    "BrokerError",
    "BrokerNotInstalled",
    "BrokerUnavailable",
    "ChuteError",
    "ConfigurationError",
    "DecodeError",
    "EnqueueError",
    "JobFailed",
    "MessageTooLarge",
    "UnknownTaskError",
]


class ChuteError(Exception):
    """Root of every error chute raises on purpose."""


class ConfigurationError(ChuteError):
    """The app, a task, a worker or the command line is configured wrongly."""


class BrokerNotInstalled(ConfigurationError):
    """No installed broker plugin serves the URL scheme; the message says what to install."""


class UnknownTaskError(ConfigurationError):
    """A task name that no registered task has."""


class EnqueueError(ChuteError):
    """A job could not be enqueued as asked."""


class ArgumentError(EnqueueError, TypeError):
    """An argument does not match the task's signature or type hints.

    Raised in the producer, at enqueue time, so a bad job never reaches a worker.

    Attributes:
        task: the task's name.
        parameter: the parameter at fault, or ``None`` when the call shape is wrong as a whole.
    """

    def __init__(self, message: str, *, task: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.parameter = parameter


class MessageTooLarge(EnqueueError):
    """The encoded job is larger than the broker accepts."""


class BrokerError(ChuteError):
    """The broker failed. The message names the URL (without password) and the queue."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached, or the connection was lost and not regained."""


class BrokerConfigConflict(BrokerError):
    """An object already on the server (queue, stream, consumer) has different settings."""


class DecodeError(ChuteError):
    """A message body is not a valid chute envelope."""


class JobFailed(ChuteError):
    """A job failed for good (it is in the dead-letter queue), seen from ``job.result()``.

    Attributes:
        job_id: the job's id.
        remote_type: the name of the exception the task raised (``"TimeoutError"`` for a run
            that timed out).
        remote_message: its message.
        remote_traceback: the traceback text from the worker.
    """

    def __init__(
        self, job_id: str, remote_type: str, remote_message: str, remote_traceback: str
    ) -> None:
        super().__init__(f"job {job_id} failed: {remote_type}: {remote_message}")
        self.job_id = job_id
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
