"""The quickstart app: three tasks on the embedded SQLite broker.

Run a worker:      chute worker quickstart:app
Enqueue from code: see demo.py, or `chute enqueue quickstart:app thumbnail --args '[1]'`
"""

from __future__ import annotations

import anyio

import chute

app = chute.App()  # no URL: the embedded SQLite broker in ./chute.sqlite3


@app.task(name="thumbnail")
async def thumbnail(image_id: int, width: int = 320) -> str:
    await anyio.sleep(0.001)  # stands in for real I/O
    return f"thumbs/{image_id}-{width}.jpg"


@app.task(name="charge", max_attempts=3, backoff=chute.Backoff(base=0.05, maximum=0.5))
def charge(order_id: int, cents: int) -> None:
    # A flaky payment API: every tenth order fails on its first attempt, then goes through.
    if order_id % 10 == 0 and chute.current_job().attempt == 1:
        raise ConnectionError(f"payment API timed out for order {order_id}")


@app.task(name="report", max_attempts=2, backoff=chute.Backoff(base=0.05))
async def report(day: str) -> None:
    raise ValueError(f"no data for {day}")  # always fails: ends in the dead-letter queue
