"""The scheduler: each slot enqueued once by any number of workers, through crashes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

import chute
from chute.brokers import MemoryBroker
from chute.worker._scheduler import CLAIM_TIMEOUT, Scheduler, slot_key

pytestmark = pytest.mark.anyio
HERE = Path(__file__).parent


def slots_of(lines: list[str]) -> list[float]:
    return [float(line.rsplit(":", 1)[1]) for line in lines]


@pytest.mark.memory
async def test_three_workers_enqueue_each_slot_once() -> None:
    app = chute.App(MemoryBroker())
    ran: list[str] = []

    @app.every(seconds=0.2, name="beat")
    async def beat() -> None:
        ran.append(chute.current_job().headers["chute-slot"])

    workers = [chute.Worker(app) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for w in workers:
            tg.start_soon(w.run)
        with anyio.fail_after(20):
            while len(ran) < 10:
                await anyio.sleep(0.02)
        for w in workers:
            w.stop()
    counts = Counter(ran)
    assert set(counts.values()) == {1}, counts
    slots = sorted(slots_of(list(counts)))
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(slots)]
    assert set(gaps) == {0.2}, f"missed slots: {gaps}"


@pytest.mark.memory
async def test_a_claim_abandoned_before_publishing_is_taken_over() -> None:
    app = chute.App(MemoryBroker())

    @app.every(seconds=60, name="hourly")
    async def hourly() -> None: ...

    store = await app.connect_store()
    broker = await app.connect()
    scheduled = app.schedules[0]
    slot = scheduled.schedule.latest(time.time())
    key = slot_key("hourly", slot)
    stale = f"claimed dead-job {time.time() - CLAIM_TIMEOUT - 1:.3f}".encode()
    await store.set(key, stale, 3600)
    scheduler = Scheduler(app, broker, store)
    assert await scheduler._settle(scheduled, slot)  # pyright: ignore[reportPrivateUsage]
    assert (await store.get(key) or b"").startswith(b"enqueued")
    assert (await broker.stats("default")).ready == 1
    # A fresh claim (its worker may still be publishing) is left alone.
    other = slot + 60
    await store.set(slot_key("hourly", other), f"claimed x {time.time():.3f}".encode(), 3600)
    assert not await scheduler._settle(scheduled, other)  # pyright: ignore[reportPrivateUsage]
    assert (await broker.stats("default")).ready == 1


@pytest.mark.memory
async def test_a_second_copy_of_a_slot_does_not_run() -> None:
    app = chute.App(MemoryBroker())
    ran: list[str] = []

    @app.every(seconds=3600, name="rare")
    async def rare() -> None:
        ran.append(chute.current_job().id)

    headers = {"chute-slot": "chute:cron:rare:0.000", "chute-slot-ttl": "60"}
    await rare.options(headers=headers).enqueue()
    await rare.options(headers=headers).enqueue()
    with anyio.fail_after(10):
        counts = await chute.Worker(app, burst=True).run()
    assert len(ran) == 1
    assert counts.succeeded == 1


@pytest.mark.sqlite
async def test_killed_and_restarted_workers_still_enqueue_each_slot_once(tmp_path: Path) -> None:
    record = tmp_path / "ticks.txt"
    record.touch()
    env = {
        **os.environ,
        "CHUTE_BROKER_URL": f"sqlite:///{tmp_path / 'b.sqlite3'}",
        "CHUTE_TEST_RECORD": str(record),
        "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
    }

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "chute", "worker", "sched_app:app", "--lease", "2"],
            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def lines() -> list[str]:
        return [line.split()[0] for line in record.read_text().splitlines()]

    async def wait_for(count: int, timeout: float) -> None:
        with anyio.fail_after(timeout):
            while len(lines()) < count:
                await anyio.sleep(0.05)

    workers = [start() for _ in range(3)]
    try:
        await wait_for(3, 60)
        for _ in range(2):
            victim = workers.pop(0)
            victim.send_signal(signal.SIGKILL)
            victim.communicate()
            await wait_for(len(lines()) + 2, 30)
            workers.append(start())
        await wait_for(len(lines()) + 4, 30)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.communicate(timeout=60)
    counts = Counter(lines())
    duplicates = {slot: n for slot, n in counts.items() if n > 1}
    assert not duplicates, f"slots run more than once: {duplicates}"
    slots = sorted(slots_of(list(counts)))
    missing = [a for a, b in itertools.pairwise(slots) if round(b - a) != 1]
    assert not missing, f"slots skipped after {missing}"
    assert all(w.returncode == 0 for w in workers)
