"""The worker: runs an app's jobs. Start it with ``chute worker module:app``."""

from chute.worker._execute import Counts
from chute.worker._worker import Worker

__all__ = ["Counts", "Worker"]
