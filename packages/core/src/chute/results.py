"""Job state and results, kept in the app's store for tasks that ask for it (``keep_result``).

Two keys per job: ``chute:job:<id>`` holds the latest state, ``chute:done:<id>`` appears once,
when the job has finished for good, so waiting for a result is waiting for one key.
"""

from __future__ import annotations

import enum
import time
from typing import Any

import msgspec

from chute.errors import JobFailed
from chute.store import Store

__all__ = ["JobRecord", "JobStatus", "ResultWriter", "read_record", "read_result", "read_status"]

# A job waiting or running keeps its state at least this long, whatever keep_result says.
PENDING_TTL = 86_400.0


class JobStatus(enum.Enum):
    """Where a job is. ``FAILED`` means an attempt failed and another is scheduled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    UNKNOWN = "unknown"
    """No record: the job keeps no result, the record expired, or the id is wrong."""


class JobRecord(msgspec.Struct, omit_defaults=True):
    state: str
    attempt: int = 0
    updated_at: float = 0.0
    result: bytes | None = None
    error_type: str = ""
    error: str = ""
    traceback: str = ""


_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(JobRecord)


def state_key(job_id: str) -> str:
    return f"chute:job:{job_id}"


def done_key(job_id: str) -> str:
    return f"chute:done:{job_id}"


class ResultWriter:
    """Writes one job's transitions; used by producers (queued) and workers (the rest)."""

    def __init__(self, store: Store, keep: float) -> None:
        self.store = store
        self.keep = keep

    async def _write(self, job_id: str, record: JobRecord, final: bool) -> None:
        data = _encoder.encode(record)
        ttl = self.keep if final else max(self.keep, PENDING_TTL)
        if final:
            await self.store.set(done_key(job_id), data, ttl)
        await self.store.set(state_key(job_id), data, ttl)

    async def queued(self, job_id: str) -> None:
        await self._write(job_id, JobRecord("queued", 0, time.time()), final=False)

    async def running(self, job_id: str, attempt: int) -> None:
        await self._write(job_id, JobRecord("running", attempt, time.time()), final=False)

    async def succeeded(self, job_id: str, attempt: int, value: Any) -> None:
        try:
            encoded = _encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            record = JobRecord(
                "succeeded", attempt, time.time(), None, "TypeError",
                f"the task succeeded but its return value cannot be stored: {exc}",
            )  # fmt: skip
        else:
            record = JobRecord("succeeded", attempt, time.time(), encoded)
        await self._write(job_id, record, final=True)

    async def failed(self, job_id: str, attempt: int, exc: BaseException, tb: str) -> None:
        record = JobRecord("failed", attempt, time.time(), None, type(exc).__name__, str(exc), tb)
        await self._write(job_id, record, final=False)

    async def dead(self, job_id: str, attempt: int, error_type: str, error: str, tb: str) -> None:
        record = JobRecord("dead", attempt, time.time(), None, error_type, error, tb)
        await self._write(job_id, record, final=True)


async def read_record(store: Store, job_id: str) -> JobRecord | None:
    """The job's latest record, or ``None``."""
    data = await store.get(state_key(job_id))
    return None if data is None else _record_decoder.decode(data)


async def read_status(store: Store, job_id: str) -> JobStatus:
    """The job's current status."""
    record = await read_record(store, job_id)
    return JobStatus.UNKNOWN if record is None else JobStatus(record.state)


async def read_result(store: Store, job_id: str, return_type: Any, timeout: float | None) -> Any:
    """Wait for the job to finish and return its value, decoded as ``return_type``.

    Raises:
        TimeoutError: not finished within ``timeout`` seconds.
        JobFailed: the job ended in the dead-letter queue, or its value could not be stored.
    """
    data = await store.wait(done_key(job_id), float("inf") if timeout is None else timeout)
    if data is None:
        raise TimeoutError(f"job {job_id} did not finish within {timeout:g} s")
    record = _record_decoder.decode(data)
    if record.state != "succeeded" or record.result is None:
        raise JobFailed(job_id, record.error_type, record.error, record.traceback)
    return msgspec.msgpack.decode(record.result, type=return_type)
