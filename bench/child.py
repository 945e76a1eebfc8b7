"""One process of one run: ``python bench/child.py '<json spec>'``; started by the harness only.

Roles:

- ``send``: enqueue ``n`` tasks one call each (``mode`` single), with the batch API in chunks
  (``batch``), or whichever is fastest (``fill``, for preparing a queue); prints the time the
  enqueueing took, from the first call to the last (connecting is not counted).
- ``pace``: enqueue one warm-up task and wait for it to complete, then ``n`` ``stamp`` tasks at
  ``rate`` per second, each stamped with the time just before its enqueue call.
- ``work``: run the system's worker with the given settings until killed.

The result is one line on stdout starting with ``BENCH-RESULT``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from systems import get
from systems.base import Adapter, Unsupported

FILL_CONCURRENCY = 50


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _args(task: str, i: int) -> tuple[Any, ...]:
    return (i, time.time()) if task == "stamp" else (i,)


async def _send(adapter: Adapter, spec: dict[str, Any]) -> dict[str, Any]:
    task, n, mode, delay = spec["task"], spec["n"], spec["mode"], spec.get("delay")
    chunk = spec.get("chunk", 1000)
    await _maybe(adapter.open())
    try:
        if mode in ("batch", "fill"):
            try:
                start = time.perf_counter()
                for first in range(0, n, chunk):
                    calls = [_args(task, i) for i in range(first, min(n, first + chunk))]
                    await _maybe(adapter.send_batch(task, calls, delay))
                return {"elapsed": time.perf_counter() - start, "batch": True}
            except Unsupported:
                if mode == "batch":
                    raise
        start = time.perf_counter()
        if mode == "fill" and inspect.iscoroutinefunction(adapter.send):
            await _fill(adapter, task, n, delay)
        else:
            for i in range(n):
                await _maybe(adapter.send(task, _args(task, i), delay))
        return {"elapsed": time.perf_counter() - start, "batch": False}
    except Unsupported as error:
        return {"status": "n/a", "reason": str(error)}
    finally:
        await _maybe(adapter.close())


async def _fill(adapter: Adapter, task: str, n: int, delay: float | None) -> None:
    """Enqueue with many calls in flight: preparing a queue is not what is measured."""
    todo = iter(range(n))

    async def sender() -> None:
        for i in todo:
            await adapter.send(task, _args(task, i), delay)

    await asyncio.gather(*(sender() for _ in range(FILL_CONCURRENCY)))


async def _pace(adapter: Adapter, spec: dict[str, Any]) -> dict[str, Any]:
    n, rate = spec["n"], spec["rate"]
    counter = Path(os.environ["BENCH_DIR"]) / "count"
    await _maybe(adapter.open())
    try:
        await _maybe(adapter.send("noop", (-1,), None))
        deadline = time.monotonic() + spec.get("warmup", 60)
        while not (counter.exists() and counter.stat().st_size > 0):
            if time.monotonic() > deadline:
                return {"status": "failed", "reason": "the warm-up task never ran"}
            await asyncio.sleep(0.01)
        lag = 0.0
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                lag = max(lag, -wait)
            await _maybe(adapter.send("stamp", (i, time.time()), None))
        elapsed = time.perf_counter() - start
        return {"elapsed": elapsed, "rate": n / elapsed, "max_lag": lag}
    finally:
        await _maybe(adapter.close())


def main() -> None:
    spec = json.loads(sys.argv[1])
    system = get(spec["system"])
    module = importlib.import_module(system.module)
    adapter: Adapter = module.Adapter(spec.get("url", ""), spec["queue"], system.options)
    role = spec["role"]
    if role == "work":
        adapter.work(spec.get("settings") or {})
        result: dict[str, Any] = {"exited": True}
    elif role == "send":
        result = asyncio.run(_send(adapter, spec))
    elif role == "pace":
        result = asyncio.run(_pace(adapter, spec))
    else:
        raise SystemExit(f"unknown role {role!r}")
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
