"""The stream and consumers on the server: created when missing, never silently changed.

JetStream keeps a consumer's configuration, and creating a durable consumer that exists with
other settings would quietly update it under every worker using it. So each object is read
first; one that exists with other settings is a :class:`~chute.errors.BrokerConfigConflict`
naming the setting, both values and the fix.
"""

from __future__ import annotations

from typing import Any

from chute.broker import QueueStats, dead_queue
from chute.errors import BrokerConfigConflict
from chute_nats._connection import Connection
from chute_nats._errors import ApiError, NoStream
from chute_nats._settings import MSG_ID, Settings, consumer_name

_NS = 1_000_000_000
# A delayed message is only held while it is moved to its queue, which takes milliseconds.
DELAY_ACK_WAIT = 30.0
_SUBJECTS_OVERLAP = 10065
_STREAM_NOT_FOUND = 10059


def _seconds(ns: Any) -> str:
    return f"{ns / _NS:g}s" if isinstance(ns, int) else repr(ns)


def _stream_config(settings: Settings) -> dict[str, Any]:
    return {
        "name": settings.stream,
        "subjects": settings.stream_subjects,
        "retention": "workqueue",
        "storage": settings.storage,
        "num_replicas": settings.replicas,
        "discard": "old",
    }


def consumer_config(settings: Settings, kind: str, queue: str) -> dict[str, Any]:
    """The durable pull consumer for ``queue``'s ready (``q``) or delayed (``d``) messages."""
    subject = settings.ready_subject(queue) if kind == "q" else settings.delayed_subject(queue)
    ack_wait = settings.ack_wait if kind == "q" else DELAY_ACK_WAIT
    return {
        "durable_name": consumer_name(kind, queue),
        "filter_subject": subject,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": round(ack_wait * _NS),
        # Attempt limits are chute's (the worker dead-letters); the server never gives up.
        "max_deliver": -1,
        # Delayed messages wait unacknowledged on the server; no cap may stall a queue.
        "max_ack_pending": -1,
        "replay_policy": "instant",
    }


async def ensure_stream(conn: Connection) -> None:
    """Create the namespace's stream, or check that the existing one has our settings."""
    settings = conn.settings
    wanted = _stream_config(settings)
    info = await conn.api(f"STREAM.INFO.{settings.stream}", missing_ok=True)
    if not info:
        try:
            info = await conn.api(f"STREAM.CREATE.{settings.stream}", wanted)
        except ApiError as exc:
            if exc.err_code != _SUBJECTS_OVERLAP:
                raise
            raise BrokerConfigConflict(
                f"NATS at {settings.safe_url}: cannot create stream {settings.stream!r} with "
                f"subjects {settings.stream_subjects}: another stream already captures them. "
                f"Fix: choose another namespace (?namespace=...), or remove the other stream's "
                f"overlapping subjects"
            ) from None
    existing: dict[str, Any] = info["config"]
    fixes = {
        "storage": f"connect with ?storage={existing.get('storage')}",
        "num_replicas": f"connect with ?replicas={existing.get('num_replicas')}",
    }
    for key in ("retention", "subjects", "storage", "num_replicas"):
        have, want = existing.get(key), wanted[key]
        if key == "subjects":
            have, want = sorted(have or []), sorted(want)
        if have != want:
            fix = fixes.get(key, "")
            fix = f"{fix}, or delete" if fix else "delete"
            raise BrokerConfigConflict(
                f"NATS at {settings.safe_url}: stream {settings.stream!r} exists with "
                f"{key}={have!r}, but this broker needs {key}={want!r}. Fix: {fix} the stream "
                f"(`nats stream rm {settings.stream}`, which deletes its messages), or use "
                "another namespace (?namespace=...)"
            )


async def store(conn: Connection, subject: str, body: bytes, headers: dict[str, str]) -> None:
    """Store one message; see :func:`store_many`."""
    await store_many(conn, [(subject, body, headers)])


async def store_many(conn: Connection, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """Store messages, creating the stream first if it has gone missing.

    Each message's headers get a fresh ``Nats-Msg-Id`` unless they have one.
    """
    for _, _, headers in messages:
        headers.setdefault(MSG_ID, conn.message_id())
    try:
        await conn.store_many(messages)
    except NoStream:
        await ensure_stream(conn)
        await conn.store_many(messages)


async def ensure_consumer(conn: Connection, kind: str, queue: str) -> str:
    """Create ``queue``'s consumer of ``kind``, or check the existing one; return its name."""
    settings = conn.settings
    wanted = consumer_config(settings, kind, queue)
    name = wanted["durable_name"]
    path = f"{settings.stream}.{name}"
    info = await conn.api(f"CONSUMER.INFO.{path}", missing_ok=True)
    if not info:
        create = {"stream_name": settings.stream, "config": wanted}
        try:
            info = await conn.api(f"CONSUMER.DURABLE.CREATE.{path}", create)
        except ApiError as exc:
            if exc.err_code != _STREAM_NOT_FOUND:
                raise
            await ensure_stream(conn)
            info = await conn.api(f"CONSUMER.DURABLE.CREATE.{path}", create)
    check_consumer(settings, queue, info["config"], wanted)
    return name


def check_consumer(
    settings: Settings, queue: str, existing: dict[str, Any], wanted: dict[str, Any]
) -> None:
    """Raise :class:`BrokerConfigConflict` for the first setting that differs."""
    name = wanted["durable_name"]
    for key, want in wanted.items():
        have = existing.get(key)
        if key == "replay_policy" or have == want:
            continue
        shown = _seconds if key == "ack_wait" else repr
        advice = ""
        if key == "ack_wait" and isinstance(have, int):
            advice = f"connect with ?ack_wait={have / _NS:g} to use it as it is, or "
        raise BrokerConfigConflict(
            f"NATS at {settings.safe_url}, queue {queue!r}: consumer {name!r} on stream "
            f"{settings.stream!r} exists with {key}={shown(have)}, but this broker needs "
            f"{key}={shown(want)}. Fix: {advice}delete the consumer "
            f"(`nats consumer rm {settings.stream} {name}`; its messages stay in the stream "
            "and unacknowledged ones are delivered again)"
        )
    if existing.get("deliver_subject"):
        raise BrokerConfigConflict(
            f"NATS at {settings.safe_url}, queue {queue!r}: consumer {name!r} is a push "
            "consumer, but this broker needs a pull consumer. Fix: delete it "
            f"(`nats consumer rm {settings.stream} {name}`)"
        )


async def _subject_counts(conn: Connection, pattern: str) -> dict[str, int]:
    info = await conn.api(f"STREAM.INFO.{conn.settings.stream}", {"subjects_filter": pattern})
    subjects: dict[str, int] | None = info["state"].get("subjects")
    return subjects or {}


async def stats(conn: Connection, queue: str) -> QueueStats:
    settings = conn.settings
    counts = await _subject_counts(conn, f"{settings.namespace}.*.{queue}")
    dead = await _subject_counts(conn, settings.ready_subject(dead_queue(queue)))
    path = f"{settings.stream}.{consumer_name('q', queue)}"
    info = await conn.api(f"CONSUMER.INFO.{path}", missing_ok=True)
    stored = counts.get(settings.ready_subject(queue), 0)
    in_flight = min(stored, int(info.get("num_ack_pending", 0)))
    return QueueStats(
        ready=stored - in_flight,
        delayed=counts.get(settings.delayed_subject(queue), 0),
        in_flight=in_flight,
        dead=sum(dead.values()),
    )


async def purge(conn: Connection, queue: str) -> int:
    settings = conn.settings
    purged = 0
    for subject in (settings.ready_subject(queue), settings.delayed_subject(queue)):
        answer = await conn.api(f"STREAM.PURGE.{settings.stream}", {"filter": subject})
        purged += int(answer.get("purged", 0))
    return purged


async def remove_consumers(conn: Connection, queue: str) -> None:
    """Delete ``queue``'s consumers (used by tests and tools; messages stay in the stream)."""
    for kind in ("q", "d"):
        await conn.api(
            f"CONSUMER.DELETE.{conn.settings.stream}.{consumer_name(kind, queue)}",
            missing_ok=True,
        )
