"""What every task body calls, the same way in every system: count a completion, time it.

A completion appends one byte to a counter file opened with ``O_APPEND``: the kernel makes each
append atomic across threads and processes, so the file's size is the number of completed tasks
whatever the worker's model (event loop, threads or forked children). The append that brings
the count to the target also records the time of the last completion. A few microseconds per
task, the same for everyone, and no server round trip that would make the broker the
bottleneck of every system alike.

Environment (set by the harness): ``BENCH_DIR`` (a directory for this run) and
``BENCH_TARGET`` (completions to wait for).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

__all__ = ["done", "latency", "stamp"]

_lock = threading.Lock()
_fds: dict[str, int] = {}
_first = False
_target = int(os.environ.get("BENCH_TARGET", "0") or 0)


def _dir() -> Path:
    return Path(os.environ["BENCH_DIR"])


def _fd(name: str) -> int:
    # Opened lazily, per process: forked pool children open their own descriptor.
    key = f"{os.getpid()}:{name}"
    fd = _fds.get(key)
    if fd is None:
        with _lock:
            fd = _fds.get(key)
            if fd is None:
                fd = os.open(_dir() / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                _fds[key] = fd
    return fd


def _publish(name: str, value: float) -> None:
    """Write ``name`` once, atomically: the first writer wins, readers never see it half done."""
    folder = _dir()
    scratch = folder / f".{name}.{os.getpid()}.{threading.get_ident()}"
    scratch.write_text(repr(value))
    try:
        os.link(scratch, folder / name)
    except FileExistsError:
        pass
    finally:
        scratch.unlink()


def done() -> None:
    """Count one completed task; the one that reaches the target records the time."""
    global _first
    now = time.time()
    fd = _fd("count")
    os.write(fd, b".")
    if not _first:
        _first = True
        _publish(f"first.{os.getpid()}", now)
    # With O_APPEND the offset after a write is at least the file's size after that write.
    if _target and os.lseek(fd, 0, os.SEEK_CUR) >= _target:
        _publish("done", time.time())


def stamp(sent: float) -> None:
    """Record how long ago (seconds) the producer stamped this task, then count it."""
    delay = time.time() - sent
    os.write(_fd("latency"), struct.pack("<d", delay))
    done()


def latency(folder: Path) -> list[float]:
    """The latencies ``stamp`` recorded in ``folder``, in seconds."""
    path = folder / "latency"
    if not path.exists():
        return []
    data = path.read_bytes()
    usable = len(data) - len(data) % 8
    return [v for (v,) in struct.iter_unpack("<d", data[:usable])]
