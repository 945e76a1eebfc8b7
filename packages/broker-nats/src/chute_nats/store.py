"""chute's store on JetStream key/value: results, unique-job keys and cron slots.

One bucket per namespace, ``chute_<namespace>``, keeping one revision per key. Each value is
stored behind an 8-byte big-endian expiry (Unix time, 0 for none): NATS 2.9 has no per-key time
to live, so an expired value reads as absent and is replaced by compare-and-set on its
revision, which keeps ``add`` and conditional ``delete`` atomic. The bucket's own maximum age
(``store_max_age``, 30 days by default) bounds every key, including those set "forever".
"""

from __future__ import annotations

import re
import struct
import time
from types import TracebackType
from typing import Any, Self

import anyio
import nats.js.errors
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from chute.errors import BrokerError
from chute_nats._connection import Connection
from chute_nats._settings import DEFAULT_URL, parse

__all__ = ["NatsStore"]

_EXPIRY = struct.Struct(">d")
_KEPT = re.compile(r"[A-Za-z0-9_\-/]")
_DEFAULT_MAX_AGE = 30 * 86_400.0


def encode_key(key: str) -> str:
    """A KV-safe key: letters, digits, ``_``, ``-`` and ``/`` kept, the rest as ``=XX``."""
    return (
        "".join(
            ch if _KEPT.fullmatch(ch) else "".join(f"={b:02X}" for b in ch.encode()) for ch in key
        )
        or "=00"
    )


def _pack(value: bytes, ttl: float | None) -> bytes:
    return _EXPIRY.pack(0.0 if ttl is None else time.time() + ttl) + value


def _unpack(data: bytes) -> bytes | None:
    """The value, or ``None`` if it expired."""
    (expires,) = _EXPIRY.unpack_from(data)
    if expires and expires <= time.time():
        return None
    return data[_EXPIRY.size :]


class NatsStore:
    """A store on a NATS server's JetStream key/value buckets.

    Args:
        url: the NATS URL, as for :class:`chute_nats.NatsBroker` (``namespace`` picks the
            bucket). Core NATS mode has no store.
        options: the broker's options, plus ``store_max_age`` (seconds, default 30 days): the
            bucket's maximum age, used when this store creates the bucket.
    """

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        max_age = float(options.pop("store_max_age", _DEFAULT_MAX_AGE))
        self.settings = parse(url, options)
        self.url = url
        self.max_age = max_age
        self.bucket = f"chute_{self.settings.namespace}"
        self._conn = Connection(self.settings)
        self._kv: KeyValue | None = None

    def __repr__(self) -> str:
        return f"NatsStore({self.settings.safe_url!r}, bucket={self.bucket!r})"

    async def __aenter__(self) -> Self:
        if not self.settings.jetstream:
            raise BrokerError(
                f"NATS at {self.settings.safe_url}: core NATS mode keeps nothing, so it has no "
                "store; use a JetStream URL for the store"
            )
        await self._conn.open()
        js = self._conn.nc.jetstream()  # pyright: ignore[reportUnknownMemberType]
        with self._failures("open the key/value bucket"):
            try:
                self._kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await js.create_key_value(  # pyright: ignore[reportUnknownMemberType]
                    KeyValueConfig(bucket=self.bucket, history=1, ttl=self.max_age)
                )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._kv = None
        await self._conn.close()

    def _failures(self, action: str) -> Any:
        return self._conn.failures(None, f"store: {action}")

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise BrokerError(f"NATS store at {self.settings.safe_url} is not open")
        return self._kv

    async def _entry(self, key: str) -> tuple[bytes | None, int]:
        """The live value (or ``None``) and the revision to compare against (0: none)."""
        try:
            entry = await self.kv.get(encode_key(key))
        except nats.js.errors.KeyNotFoundError as exc:
            # A deleted key leaves a tombstone whose revision guards the next create.
            revision = getattr(getattr(exc, "entry", None), "revision", None) or 0
            return None, revision
        if entry.value is None:
            return None, entry.revision or 0
        return _unpack(entry.value), entry.revision or 0

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        with self._failures(f"set {key!r}"):
            await self.kv.put(encode_key(key), _pack(value, ttl))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        with self._failures(f"add {key!r}"):
            current, revision = await self._entry(key)
            if current is not None:
                return False
            try:
                await self.kv.update(encode_key(key), _pack(value, ttl), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
            return True

    async def get(self, key: str) -> bytes | None:
        with self._failures(f"get {key!r}"):
            return (await self._entry(key))[0]

    async def delete(self, key: str, *, value: bytes | None = None) -> bool:
        with self._failures(f"delete {key!r}"):
            current, revision = await self._entry(key)
            if current is None or (value is not None and current != value):
                return False
            try:
                await self.kv.delete(encode_key(key), last=revision)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
                return False
            return True

    async def wait(self, key: str, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        with self._failures(f"watch {key!r}"):
            watcher = await self.kv.watch(encode_key(key))  # pyright: ignore[reportUnknownMemberType]
            try:
                while True:
                    value = await self.get(key)
                    if value is not None:
                        return value
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    # An update (or none within a second) means: read again.
                    with anyio.move_on_after(min(remaining, 1.0)):
                        await watcher.updates(timeout=min(remaining, 1.0) + 1.0)
            finally:
                await watcher.stop()
