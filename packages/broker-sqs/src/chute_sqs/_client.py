"""The SQS connection: one aioboto3 client, queue URLs, batched sends and deletes, errors.

Every driver error is translated here, and only here, into chute's error types, naming the
endpoint and the queue. Transport retries are botocore's ("standard" mode); this module adds
the retries SQS leaves to its callers: the failed entries of a batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import aioboto3  # pyright: ignore[reportMissingTypeStubs]
import aiohttp
import anyio
from aiobotocore.config import AioConfig  # pyright: ignore[reportMissingTypeStubs]
from botocore.exceptions import (  # pyright: ignore[reportMissingTypeStubs]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)

from chute.errors import BrokerConfigConflict, BrokerError, BrokerUnavailable, ConfigurationError
from chute_sqs._options import MAX_VISIBILITY, SqsOptions, is_fifo, sqs_name
from chute_sqs._wire import encode_body, entry_size, whole_seconds

log = logging.getLogger("chute_sqs")

_GONE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_CONFLICT = frozenset({"QueueAlreadyExists", "QueueNameExists"})
_STALE = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight",
     "AWS.SimpleQueueService.MessageNotInflight"}
)  # fmt: skip
_BATCH = 10
_SEND_TRIES = 5
_PARALLEL = 8


class PurgeInProgress(Exception):
    """SQS refused a purge: the queue was purged less than 60 seconds ago."""


class StaleReceipt(Exception):
    """A receipt handle no longer valid: the message was deleted or received again."""


def _code(exc: ClientError) -> str:
    response: Any = exc.response
    error: dict[str, Any] = response.get("Error", {})
    code = str(error.get("Code", ""))
    query_code = str(error.get("QueryErrorCode", ""))
    return query_code if query_code in _GONE | _CONFLICT else code


class SqsClient:
    """One connection to SQS for one broker instance; open with :meth:`open`."""

    def __init__(self, options: SqsOptions, described: str) -> None:
        self.options = options
        self.described = described
        self._client: Any = None
        self._client_cm: Any = None
        self._urls: dict[str, str] = {}
        self._creating: dict[str, anyio.Lock] = {}
        self._deletes: dict[str, list[tuple[str, float]]] = {}
        self._flushing = False
        self._flushed = anyio.Event()
        self._flushed.set()

    async def open(self) -> None:
        opts = self.options
        session: Any = aioboto3.Session(profile_name=opts.profile)
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": 4},
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=opts.wait + 20,
        )
        self._client_cm = session.client(
            "sqs", region_name=opts.region, endpoint_url=opts.endpoint, config=config
        )
        try:
            self._client = await self._client_cm.__aenter__()
        except BotoCoreError as exc:
            self._client_cm = None
            raise BrokerUnavailable(f"cannot open SQS at {self.described}: {exc}") from exc

    async def close(self) -> None:
        await self.flush()
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    def _fail(self, exc: BaseException, queue: str, what: str) -> NoReturn:
        where = f"SQS at {self.described}, queue {queue!r}"
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _CONFLICT:
                raise BrokerConfigConflict(
                    f"{where}: {what}: a queue of that name exists with other attributes ({exc})"
                ) from exc
            raise BrokerError(f"{where}: {what}: {exc}") from exc
        if isinstance(exc, NoCredentialsError):
            raise BrokerError(
                f"{where}: {what}: no AWS credentials found (environment, shared files, "
                "instance role)"
            ) from exc
        raise BrokerUnavailable(f"{where}: {what}: {exc}") from exc

    async def call(self, queue: str, op: str, **params: Any) -> Any:
        """Run the SQS operation ``op``; errors become chute errors naming ``queue``."""
        client = self._client
        if client is None:
            raise BrokerError(f"SQS broker at {self.described} is not open (use `async with`)")
        try:
            return await getattr(client, op)(**params)
        except ClientError as exc:
            code = _code(exc)
            if code in _GONE:
                self._urls.pop(queue, None)
                raise _QueueGone(queue) from exc
            if code in _STALE and op in ("change_message_visibility",):
                raise StaleReceipt(code) from exc
            if code.endswith("PurgeQueueInProgress") and op == "purge_queue":
                raise PurgeInProgress(code) from exc
            self._fail(exc, queue, op)
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            self._fail(exc, queue, op)

    # Queues

    def name(self, queue: str) -> str:
        return sqs_name(queue, self.options.prefix)

    async def url(self, queue: str, *, create: bool) -> str | None:
        """The queue's URL; created when missing if ``create`` (and the options allow)."""
        url = self._urls.get(queue)
        if url is not None:
            return url
        lock = self._creating.setdefault(queue, anyio.Lock())
        async with lock:
            url = self._urls.get(queue)
            if url is None:
                url = await self._resolve(queue, create=create)
                if url is not None:
                    self._urls[queue] = url
            return url

    async def _resolve(self, queue: str, *, create: bool) -> str | None:
        name = self.name(queue)
        try:
            found = await self.call(queue, "get_queue_url", QueueName=name)
            return str(found["QueueUrl"])
        except _QueueGone:
            pass
        if not create:
            return None
        if not self.options.create:
            raise BrokerError(
                f"SQS at {self.described}: queue {queue!r} (SQS name {name!r}) does not exist, "
                "and the broker was told not to create queues (create=false)"
            )
        attributes = {
            "MessageRetentionPeriod": str(self.options.retention),
            "MaximumMessageSize": str(self.options.max_message_size),
        }
        if is_fifo(queue):
            attributes |= {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        try:
            created = await self._client.create_queue(QueueName=name, Attributes=attributes)
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                self._fail(exc, queue, f"creating {name!r}")
            raise BrokerError(
                f"SQS at {self.described}: queue {queue!r} (SQS name {name!r}) does not exist "
                f"and could not be created ({exc}); create it, or grant sqs:CreateQueue"
            ) from exc
        except (BotoCoreError, OSError) as exc:
            self._fail(exc, queue, f"creating {name!r}")
        log.info("created SQS queue %s for chute queue %r", name, queue)
        return str(created["QueueUrl"])

    async def on_queue(
        self, queue: str, fn: Callable[[str], Awaitable[Any]], *, create: bool = True
    ) -> Any:
        """Run ``fn(url)``; if the queue vanished meanwhile, resolve (or create) it once more."""
        for tries in (1, 2):
            url = await self.url(queue, create=create)
            if url is None:
                return None
            try:
                return await fn(url)
            except _QueueGone:
                if tries == 2:
                    raise BrokerError(
                        f"SQS at {self.described}: queue {queue!r} disappeared while in use"
                    ) from None
        raise AssertionError("unreachable")

    # Sends

    def entry(
        self,
        queue: str,
        body: bytes,
        delay: float,
        key: str | None,
        attributes: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """A SendMessageBatch entry (without its Id) for ``body``; ``_size`` is SQS's count."""
        text = encode_body(body)
        entry: dict[str, Any] = {"MessageBody": text}
        if attributes:
            entry["MessageAttributes"] = attributes
        if is_fifo(queue):
            entry["MessageGroupId"] = self.options.group
            entry["MessageDeduplicationId"] = dedup_id(key)
        elif delay > 0:
            entry["DelaySeconds"] = whole_seconds(delay)
        size = entry_size(text, attributes or {})
        if size > self.options.max_message_size:
            raise BrokerError(
                f"SQS at {self.described}, queue {queue!r}: a message of {len(body)} bytes is "
                f"{size} bytes encoded, more than the {self.options.max_message_size} SQS "
                "accepts (max_message_size)"
            )
        entry["_size"] = size
        return entry

    async def send(self, queue: str, entries: Sequence[dict[str, Any]]) -> None:
        """SendMessageBatch in chunks of ten (and of at most ``max_message_size`` bytes),
        several at once; failed entries are sent again, and never dropped silently."""
        chunks: list[list[dict[str, Any]]] = []
        size = 0
        for entry in entries:
            if (
                not chunks
                or len(chunks[-1]) == _BATCH
                or size + entry["_size"] > (self.options.max_message_size)
            ):
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += entry["_size"]
        await self._parallel(queue, [lambda c=c: self._send_chunk(queue, c) for c in chunks])

    async def _parallel(self, queue: str, jobs: list[Callable[[], Awaitable[None]]]) -> None:
        if len(jobs) == 1:
            await jobs[0]()
            return
        errors: list[BaseException] = []
        limiter = anyio.CapacityLimiter(_PARALLEL)

        async def run(job: Callable[[], Awaitable[None]]) -> None:
            async with limiter:
                try:
                    await job()
                except Exception as exc:
                    errors.append(exc)

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(run, job)
        if errors:
            raise errors[0]

    async def _send_chunk(self, queue: str, chunk: list[dict[str, Any]]) -> None:
        pending = {str(i): {k: v for k, v in e.items() if k != "_size"} for i, e in
                   enumerate(chunk)}  # fmt: skip
        for attempt in range(_SEND_TRIES):

            async def send(url: str, pending: dict[str, dict[str, Any]] = pending) -> Any:
                entries = [{"Id": i, **e} for i, e in pending.items()]
                return await self.call(queue, "send_message_batch", QueueUrl=url, Entries=entries)

            result = await self.on_queue(queue, send)
            failed: list[dict[str, Any]] = result.get("Failed", [])
            if not failed:
                return
            sender = [f for f in failed if f.get("SenderFault")]
            if sender:
                f = sender[0]
                raise BrokerError(
                    f"SQS at {self.described}, queue {queue!r}: {len(sender)} message(s) refused: "
                    f"{f.get('Code')}: {f.get('Message')}"
                )
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
            await anyio.sleep(0.05 * 2**attempt)
        raise BrokerError(
            f"SQS at {self.described}, queue {queue!r}: {len(pending)} message(s) still not "
            f"stored after {_SEND_TRIES} tries"
        )

    # Deletes, batched across callers

    def queue_delete(self, queue: str, handle: str, deadline: float) -> None:
        """Delete the message received with ``handle``, if still before ``deadline``
        (``time.monotonic()``) when the batch is sent. :meth:`flush` sends it."""
        self._deletes.setdefault(queue, []).append((handle, deadline))

    async def flush(self) -> None:
        """Send every queued delete. Concurrent callers coalesce into shared batches; a caller
        arriving during a flush returns at once (its delete joins the next round)."""
        if self._flushing:
            return
        self._flushing = True
        self._flushed = anyio.Event()
        try:
            while self._deletes:
                pending, self._deletes = self._deletes, {}
                jobs: list[Callable[[], Awaitable[None]]] = []
                for queue, items in pending.items():
                    for start in range(0, len(items), _BATCH):
                        chunk = items[start : start + _BATCH]
                        jobs.append(lambda q=queue, c=chunk: self._delete_chunk(q, c))
                await self._parallel("(deletes)", jobs)
        finally:
            self._flushing = False
            self._flushed.set()

    async def drain(self) -> None:
        """Wait until no flush runs and nothing is queued."""
        while self._flushing or self._deletes:
            await self._flushed.wait()
            await self.flush()

    async def _delete_chunk(self, queue: str, chunk: list[tuple[str, float]]) -> None:
        now = time.monotonic()
        live = [handle for handle, deadline in chunk if now < deadline]
        if len(live) < len(chunk):
            log.info(
                "queue %r: %d ack(s) came after the lease lapsed; not deleting (the message "
                "is delivered again)",
                queue,
                len(chunk) - len(live),
            )
        if not live:
            return

        async def delete(url: str) -> Any:
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(live)]
            return await self.call(queue, "delete_message_batch", QueueUrl=url, Entries=entries)

        try:
            result = await self.on_queue(queue, delete, create=False)
        except BrokerError as exc:
            log.warning("queue %r: %d delete(s) failed, delivered again later: %s",
                        queue, len(live), exc)  # fmt: skip
            return
        answer: dict[str, Any] = result or {}
        failed: list[dict[str, Any]] = answer.get("Failed", [])
        if failed:
            log.info("queue %r: %d delete(s) refused (%s)", queue, len(failed),
                     failed[0].get("Code"))  # fmt: skip

    async def delete_now(self, queue: str, handles: list[str]) -> set[str]:
        """Delete at once; return the handles that were deleted."""
        done: set[str] = set()
        for start in range(0, len(handles), _BATCH):
            chunk = handles[start : start + _BATCH]

            async def delete(url: str, chunk: list[str] = chunk) -> Any:
                entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
                return await self.call(queue, "delete_message_batch", QueueUrl=url, Entries=entries)

            result = await self.on_queue(queue, delete, create=False)
            answer: dict[str, Any] = result or {}
            successful: list[dict[str, Any]] = answer.get("Successful", [])
            ok = {int(s["Id"]) for s in successful}
            done.update(chunk[i] for i in ok)
        return done


class _QueueGone(Exception):
    def __init__(self, queue: str) -> None:
        super().__init__(queue)
        self.queue = queue


def dedup_id(key: str | None) -> str:
    """A FIFO deduplication id: the key when SQS accepts it as one, else a fresh one."""
    if key is not None:
        if 1 <= len(key) <= 128 and all("!" <= c <= "~" for c in key):
            return key
        return hashlib.sha256(key.encode()).hexdigest()
    return uuid.uuid4().hex


def check_lease(lease: float, queue: str) -> None:
    if lease + 1 > MAX_VISIBILITY:
        raise ConfigurationError(
            f"queue {queue!r}: a lease of {lease:g} s is longer than SQS allows (a message "
            f"stays invisible at most {MAX_VISIBILITY} s, 12 hours, from when it is received)"
        )
