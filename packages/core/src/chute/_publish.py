"""From prepared calls to stored messages: envelopes, size checks, delays, unique keys."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from chute.broker import Broker, Outgoing
from chute.errors import EnqueueError, MessageTooLarge
from chute.message import EMPTY, Envelope, encode_envelope
from chute.results import ResultWriter
from chute.store import Store
from chute.task import Call

if TYPE_CHECKING:
    from chute.app import App

KEY_TTL_HEADER = "chute-key-ttl"


def unique_key(key: str) -> str:
    return f"chute:unique:{key}"


def _raw(data: bytes | None) -> msgspec.Raw:
    return EMPTY if data is None else msgspec.Raw(data)


def outgoing(app: App, calls: Sequence[Call[Any]], broker: Broker) -> dict[str, list[Outgoing]]:
    """Envelopes per queue, with delays split to what the broker holds natively.

    Raises:
        MessageTooLarge: a job is larger than the broker accepts.
        EnqueueError: a delay on a broker that holds none.
    """
    caps = broker.capabilities
    now = time.time()
    batches: dict[str, list[Outgoing]] = {}
    for call in calls:
        options = call.options
        delay = options.delay
        not_before = None
        if delay > 0 and caps.max_delay == 0:
            raise EnqueueError(
                f"task {call.task!r}: {app.describe_broker()} cannot hold delayed messages "
                "(its max_delay is 0); use a broker with delays for delay= and at="
            )
        if delay > 0 and caps.max_delay is not None and delay > caps.max_delay:
            not_before = now + delay
            delay = caps.max_delay
        headers = dict(options.headers) if options.headers else {}
        if options.key is not None and options.key_ttl is not None:
            headers[KEY_TTL_HEADER] = f"{options.key_ttl:g}"
        envelope = Envelope(
            id=call.id,
            task=call.task,
            queue=call.queue,
            params=_raw(call.params),
            args=_raw(call.args),
            kwargs=_raw(call.kwargs),
            enqueued_at=now,
            not_before=not_before,
            key=options.key,
            headers=headers,
        )
        body = encode_envelope(envelope)
        if caps.max_body is not None and len(body) > caps.max_body:
            raise MessageTooLarge(
                f"task {call.task!r}: the job is {len(body)} bytes encoded, but "
                f"{app.describe_broker()} accepts at most {caps.max_body} bytes per "
                "message; pass a reference (a URL, a database key) instead of the data"
            )
        batches.setdefault(call.queue, []).append(Outgoing(body, delay, options.key))
    return batches


async def claim_unique(store: Store, key: str, job_id: str, lock_ttl: float) -> str | None:
    """Take ``key`` for ``job_id``; ``None`` if taken now, else the id of the job holding it."""
    for _ in range(5):
        if await store.add(unique_key(key), job_id.encode(), lock_ttl):
            return None
        holder = await store.get(unique_key(key))
        if holder is not None:
            return holder.decode()
        # Freed between the two calls: try again.
    raise EnqueueError(f"unique key {key!r} keeps changing hands; try again")


async def release_unique(store: Store, key: str, job_id: str, keep: float | None) -> None:
    """Free ``key`` after its job finished, or keep it taken for ``keep`` seconds."""
    if keep is None:
        await store.delete(unique_key(key), value=job_id.encode())
    elif await store.get(unique_key(key)) == job_id.encode():
        await store.set(unique_key(key), job_id.encode(), keep)


async def send(
    app: App, broker: Broker, get_store: Callable[[], Awaitable[Store]], calls: Sequence[Call[Any]]
) -> list[str]:
    """Publish ``calls``, honouring unique keys; the job id each call resolved to."""
    ids = [call.id for call in calls]
    fresh: list[Call[Any]] = []
    claimed: list[Call[Any]] = []
    needs_store = any(c.options.key for c in calls) or any(
        (t := app.tasks.get(c.task)) is not None and t.opts.keep_result for c in calls
    )
    store = await get_store() if needs_store else None
    try:
        for i, call in enumerate(calls):
            key = call.options.key
            if key is not None and store is not None:
                holder = await claim_unique(store, key, call.id, app.unique_lock_ttl)
                if holder is not None:
                    ids[i] = holder
                    continue
                claimed.append(call)
            fresh.append(call)
        if store is not None:
            await _record_queued(app, store, fresh)
        for queue, batch in outgoing(app, fresh, broker).items():
            await broker.publish(queue, batch)
    except BaseException:
        if store is not None:
            for call in claimed:
                assert call.options.key is not None
                await store.delete(unique_key(call.options.key), value=call.id.encode())
        raise
    return ids


async def _record_queued(app: App, store: Store, calls: Sequence[Call[Any]]) -> None:
    """Write the queued state of jobs whose task keeps results (known to this app)."""
    for call in calls:
        task = app.tasks.get(call.task)
        if task is not None and task.opts.keep_result is not None:
            await ResultWriter(store, task.opts.keep_result).queued(call.id)
