"""Results, job state and unique jobs, in-process and across processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import chute
from chute.brokers import MemoryBroker

pytestmark = [pytest.mark.memory, pytest.mark.anyio]

FAST = chute.Backoff(base=0.01, maximum=0.02)


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def drain(app: chute.App) -> chute.worker.Counts:
    with anyio.fail_after(20):
        return await chute.Worker(app, burst=True).run()


async def test_result_is_decoded_as_the_return_type_and_status_follows() -> None:
    app = chute.App(MemoryBroker())

    @app.task(keep_result=60)
    async def mirror(p: Point) -> Point:
        assert await app.job(chute.current_job().id).status() is chute.JobStatus.RUNNING
        return Point(p.y, p.x)

    job = await mirror.enqueue(Point(1, 2))
    assert await job.status() is chute.JobStatus.QUEUED
    await drain(app)
    assert await job.status() is chute.JobStatus.SUCCEEDED
    value = await job.result(timeout=5)
    assert value == Point(2, 1)
    assert isinstance(value, Point)


async def test_failure_carries_remote_type_message_and_traceback() -> None:
    app = chute.App(MemoryBroker())

    @app.task(keep_result=60, max_attempts=2, backoff=FAST)
    def explode() -> int:
        raise KeyError("missing")

    job = await explode.enqueue()
    seen: list[chute.JobStatus] = []

    async def watch() -> None:
        while True:
            status = await job.status()
            if not seen or seen[-1] is not status:
                seen.append(status)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await drain(app)
        tg.cancel_scope.cancel()
    with pytest.raises(chute.JobFailed) as info:
        await job.result(timeout=5)
    assert info.value.remote_type == "KeyError"
    assert info.value.remote_message == "'missing'"
    assert 'raise KeyError("missing")' in info.value.remote_traceback
    assert seen[-1] is chute.JobStatus.DEAD
    assert chute.JobStatus.FAILED in seen


async def test_result_waits_for_a_job_that_has_not_finished_yet() -> None:
    app = chute.App(MemoryBroker())

    @app.task(keep_result=60)
    async def slow() -> str:
        await anyio.sleep(0.2)
        return "done"

    job = await slow.enqueue()
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, app)
        assert await job.result(timeout=10) == "done"
    with pytest.raises(TimeoutError):
        await app.job("no-such-job").result(timeout=0.1)


async def test_tasks_without_keep_result_write_nothing() -> None:
    app = chute.App(MemoryBroker())

    @app.task
    async def quiet() -> int:
        return 1

    job = await quiet.enqueue()
    await drain(app)
    store = app.store
    assert isinstance(store, chute.stores.MemoryStore)
    assert store._data == {}  # pyright: ignore[reportPrivateUsage]
    assert await job.status() is chute.JobStatus.UNKNOWN
    with pytest.raises(chute.ConfigurationError, match="keeps no results"):
        await job.result()


def test_features_that_need_a_store_fail_at_configuration_time() -> None:
    class NoStore(MemoryBroker):
        default_store = None  # type: ignore[assignment]

    app = chute.App(NoStore("nostore://"))
    assert app.store is None
    with pytest.raises(chute.ConfigurationError, match="needs a store"):

        @app.task(keep_result=10)
        async def kept() -> None: ...

    @app.task
    async def plain() -> None: ...

    with pytest.raises(chute.ConfigurationError, match="needs a store"):
        plain.options(key="k")
    elsewhere = chute.App(NoStore("nostore://"), store="memory://")
    assert isinstance(elsewhere.store, chute.stores.MemoryStore)


async def test_a_hundred_concurrent_enqueues_of_one_key_make_one_job() -> None:
    app = chute.App(MemoryBroker())
    ran: list[int] = []

    @app.task
    async def welcome(user: int) -> None:
        ran.append(user)

    jobs: list[chute.Job[None]] = []

    async def enqueue(n: int) -> None:
        jobs.append(await welcome.options(key="welcome:42").enqueue(n))

    async with anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(enqueue, n)
    assert len({job.id for job in jobs}) == 1
    assert (await app.broker.stats("default")).ready == 1
    await drain(app)
    assert len(ran) == 1
    # Finished: the key is free again.
    again = await welcome.options(key="welcome:42").enqueue(7)
    assert again.id != jobs[0].id


async def test_key_ttl_keeps_the_key_taken_after_the_job() -> None:
    app = chute.App(MemoryBroker())

    @app.task
    async def once() -> None: ...

    first = await once.options(key="daily", key_ttl=0.5).enqueue()
    await drain(app)
    assert (await once.options(key="daily").enqueue()).id == first.id
    await anyio.sleep(0.6)
    assert (await once.options(key="daily").enqueue()).id != first.id


async def test_a_dead_job_frees_its_key() -> None:
    app = chute.App(MemoryBroker())

    @app.task(max_attempts=1)
    async def fails() -> None:
        raise RuntimeError

    first = await fails.options(key="k").enqueue()
    await drain(app)
    assert (await fails.options(key="k").enqueue()).id != first.id


@pytest.mark.sqlite
async def test_unique_keys_hold_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    script = f"""
import anyio, chute, sys
app = chute.App({url!r})
@app.task(name="welcome")
async def welcome(n: int) -> None: ...
async def main():
    ids = set()
    for n in range(20):
        ids.add((await welcome.options(key="w:1").enqueue(n)).id)
    print(len(ids), ids.pop())
anyio.run(main)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert {out[0] for out in outs} == {"1"}
    assert len({out[1] for out in outs}) == 1
    async with chute.App(url) as app:
        assert (await app.broker.stats("default")).ready == 1


@pytest.mark.sqlite
async def test_results_across_processes_and_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "resapp.py").write_text(
        "import chute\n"
        "app = chute.App()\n"
        "@app.task(name='square', keep_result=300)\n"
        "def square(n: int) -> int:\n"
        "    return n * n\n"
    )
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    env = {
        **os.environ,
        "CHUTE_BROKER_URL": url,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    async with chute.App(url) as producer:
        job = await producer.enqueue("square", 12)
        worker = subprocess.Popen(
            [sys.executable, "-m", "chute", "worker", "resapp:app", "--burst"],
            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert await producer.job(job.id).result(timeout=60) == 144
        assert await producer.job(job.id).status() is chute.JobStatus.SUCCEEDED
    worker.communicate(timeout=60)
    shown = subprocess.run(
        [sys.executable, "-m", "chute", "job", "resapp:app", job.id],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"{job.id}: succeeded (attempt 1)" in shown.stdout
    assert "result: 144" in shown.stdout
