"""What type checkers see on tasks, enqueue and jobs. Checked by pyright in ``nox -s typecheck``.

Never run; every line is a claim about static types.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

import chute
from chute.task import AsyncTask, Bound, SyncTask

app = chute.App("memory://")


@app.task
async def add(x: int, y: int = 0) -> int:
    return x + y


@app.task(queue="files", max_attempts=5)
def resize(path: str, *, width: int) -> bytes:
    return b""


async def claims() -> None:
    assert isinstance(add, AsyncTask)
    assert isinstance(resize, SyncTask)
    assert_type(await add.enqueue(1, y=2), chute.Job[int])
    assert_type(await resize.enqueue("a.png", width=3), chute.Job[bytes])
    assert isinstance(add.options(delay=5), Bound)
    assert_type(await add.options(delay=5).enqueue(1), chute.Job[int])
    assert_type(add.call(1), chute.Call[int])
    assert_type(await add.enqueue_many([add.call(1), add.call(2)]), list[chute.Job[int]])
    inline = assert_type(add(1, 2), Coroutine[Any, Any, int])
    assert_type(await inline, int)
    assert_type(resize("p", width=1), bytes)
    assert_type(add.enqueue_sync(1), chute.Job[int])
    assert_type(await app.enqueue("anything", 1, 2), chute.Job[Any])

    await add.enqueue("one")  # pyright: ignore[reportArgumentType]
    await resize.enqueue("a.png", 3)  # pyright: ignore[reportCallIssue]
    await add.enqueue(1, z=3)  # pyright: ignore[reportCallIssue]
