"""What a worker records about a job beyond the broker: results, state, unique keys.

Nothing is written for a task without ``keep_result`` and a job without a unique key, so jobs
nobody asks about cost no store round trips.
"""

from __future__ import annotations

import logging
from typing import Any

from chute._publish import KEY_TTL_HEADER, release_unique
from chute.message import Envelope
from chute.results import ResultWriter
from chute.store import Store
from chute.task import Task

SLOT_HEADER = "chute-slot"
SLOT_TTL_HEADER = "chute-slot-ttl"

log = logging.getLogger("chute.worker")


class Bookkeeping:
    """Store writes around one worker's jobs. Failures are logged, never fatal to the job."""

    def __init__(self, store: Store | None) -> None:
        self.store = store

    def _writer(self, task: Task[..., Any] | None) -> ResultWriter | None:
        if self.store is None or task is None or task.opts.keep_result is None:
            return None
        return ResultWriter(self.store, task.opts.keep_result)

    async def started(self, envelope: Envelope, task: Task[..., Any], attempt: int) -> None:
        writer = self._writer(task)
        if writer is not None:
            await self._safely(writer.running(envelope.id, attempt))

    async def succeeded(
        self, envelope: Envelope, task: Task[..., Any], attempt: int, value: Any
    ) -> None:
        writer = self._writer(task)
        if writer is not None:
            await self._safely(writer.succeeded(envelope.id, attempt, value))
        await self._release(envelope)

    async def retrying(
        self, envelope: Envelope, task: Task[..., Any], attempt: int, exc: BaseException, tb: str
    ) -> None:
        writer = self._writer(task)
        if writer is not None:
            await self._safely(writer.failed(envelope.id, attempt, exc, tb))

    async def dead(
        self,
        envelope: Envelope | None,
        task: Task[..., Any] | None,
        attempt: int,
        error_type: str,
        error: str,
        tb: str,
    ) -> None:
        if envelope is None:
            return
        writer = self._writer(task)
        if writer is not None:
            await self._safely(writer.dead(envelope.id, attempt, error_type, error, tb))
        await self._release(envelope)

    async def first_of_slot(self, envelope: Envelope) -> bool:
        """For a scheduled job: whether it is the copy that runs its slot.

        Only a crash between publishing and confirming a slot makes two copies; the first copy
        to start wins, and a redelivery of that same copy still runs.
        """
        key = envelope.headers.get(SLOT_HEADER)
        if key is None or self.store is None:
            return True
        ttl = float(envelope.headers.get(SLOT_TTL_HEADER, "3600"))
        mine = envelope.id.encode()
        if await self.store.add(f"{key}:ran", mine, ttl):
            return True
        return await self.store.get(f"{key}:ran") in (mine, None)

    async def _release(self, envelope: Envelope) -> None:
        if envelope.key is None or self.store is None:
            return
        keep = envelope.headers.get(KEY_TTL_HEADER)
        await self._safely(
            release_unique(self.store, envelope.key, envelope.id, float(keep) if keep else None)
        )

    async def _safely(self, write: Any) -> None:
        try:
            await write
        except Exception as exc:
            log.warning("could not record job state in the store: %s", exc)
