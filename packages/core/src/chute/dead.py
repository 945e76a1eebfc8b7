"""Dead letters: jobs that will not run again on their own, kept in ``<queue>.dead``.

Core writes them through the ordinary broker protocol, so every broker gets inspectable,
requeueable dead letters. The reason, error and traceback travel in the envelope's headers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from chute.broker import Ack, Broker, Delivery, Outgoing, dead_queue
from chute.errors import DecodeError
from chute.message import Envelope, decode_envelope, encode_envelope, new_job_id

__all__ = ["DeadLetter", "dead_letter_body", "list_dead", "purge_dead", "requeue_dead"]

# Reasons, as written in the ``reason`` header.
FAILED = "failed"  # the task raised on its last allowed attempt
LOST = "attempts exhausted by lost workers"  # redelivered past max_attempts, never finished
UNKNOWN_TASK = "unknown task"
UNDECODABLE = "undecodable message"
BAD_ARGUMENTS = "arguments do not fit the task"

_DEAD_HEADERS = ("reason", "error", "traceback", "attempts", "failed_at")


def dead_letter_body(
    queue: str,
    body: bytes,
    envelope: Envelope | None,
    *,
    reason: str,
    attempt: int,
    error: str | None = None,
    traceback: str | None = None,
) -> bytes:
    """The body to publish on ``<queue>.dead`` for a message that will not run again."""
    if envelope is None:
        envelope = Envelope(id=new_job_id(), task="", queue=queue, original=body)
    headers = dict(envelope.headers)
    headers["reason"] = reason
    headers["attempts"] = str(attempt)
    headers["failed_at"] = f"{time.time():.3f}"
    if error is not None:
        headers["error"] = error
    if traceback is not None:
        headers["traceback"] = traceback
    envelope.headers = headers
    return encode_envelope(envelope)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter, as ``chute dead list`` shows it.

    Attributes:
        id: the job id.
        task: the task name ("" when the original message was not a chute envelope).
        reason: why it is dead.
        error: the last error, ``Type: message``.
        attempts: how many attempts it had.
        failed_at: Unix time it was dead-lettered.
        traceback: the last error's traceback text.
    """

    id: str
    task: str
    reason: str
    error: str
    attempts: int
    failed_at: float
    traceback: str

    @classmethod
    def from_body(cls, body: bytes) -> DeadLetter:
        try:
            env = decode_envelope(body)
        except DecodeError as exc:
            return cls("?", "?", UNDECODABLE, str(exc), 0, 0.0, "")
        h = env.headers
        return cls(
            id=env.id,
            task=env.task,
            reason=h.get("reason", "?"),
            error=h.get("error", ""),
            attempts=int(h.get("attempts", "0") or 0),
            failed_at=float(h.get("failed_at", "0") or 0),
            traceback=h.get("traceback", ""),
        )


@asynccontextmanager
async def _leased(broker: Broker, queue: str, limit: int) -> AsyncGenerator[list[Delivery], None]:
    """Lease up to ``limit`` dead letters; whatever is left unsettled is released on exit."""
    stats = await broker.stats(queue)
    wanted = min(limit, stats.dead)
    if wanted <= 0:
        yield []
        return
    taken: list[Delivery] = []
    # Leased where the broker can; otherwise what is read is given back by release().
    mode = Ack.ON_COMPLETION if Ack.ON_COMPLETION in broker.capabilities.acks else Ack.ON_RECEIPT
    async with broker.consume(dead_queue(queue), ack=mode, prefetch=wanted, lease=60) as deliveries:
        # Counts may lag behind a broker's reality: stop once the queue stays dry a moment.
        with anyio.move_on_after(2.0) as scope:
            async for delivery in deliveries:
                taken.append(delivery)
                scope.deadline = anyio.current_time() + 0.5
                if len(taken) >= wanted:
                    break
        try:
            yield taken
        finally:
            with anyio.CancelScope(shield=True):
                for delivery in taken:
                    await delivery.release()  # a no-op for those already settled


async def list_dead(broker: Broker, queue: str, limit: int = 100) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``queue``, left in place."""
    async with _leased(broker, queue, limit) as taken:
        return [DeadLetter.from_body(d.body) for d in taken]


async def requeue_dead(broker: Broker, queue: str, limit: int = 1_000_000) -> int:
    """Move up to ``limit`` dead letters back to their queue as fresh jobs; return how many.

    Letters whose original message was not a chute envelope stay where they are.
    """
    moved = 0
    async with _leased(broker, queue, limit) as taken:
        for delivery in taken:
            try:
                env = decode_envelope(delivery.body)
            except DecodeError:
                continue
            if env.original is not None:
                continue
            env.headers = {k: v for k, v in env.headers.items() if k not in _DEAD_HEADERS}
            env.not_before = None
            await broker.publish(env.queue or queue, [Outgoing(encode_envelope(env))])
            await delivery.ack()
            moved += 1
    return moved


async def purge_dead(broker: Broker, queue: str) -> int:
    """Delete every dead letter of ``queue``; return how many."""
    return await broker.purge(dead_queue(queue))
