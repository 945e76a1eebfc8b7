"""Real worker processes on a real SQLite file: SIGKILL, SIGTERM, crash loops, supervision."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import chute
from chute.dead import list_dead

pytestmark = [pytest.mark.sqlite, pytest.mark.anyio]

HERE = Path(__file__).parent
SPAWN = 30.0  # a cold Python start on a loaded machine


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.record = tmp / "record.txt"
        self.record.touch()
        self.url = f"sqlite:///{tmp / 'broker.sqlite3'}"
        self.vars = {
            **os.environ,
            "CHUTE_BROKER_URL": self.url,
            "CHUTE_TEST_RECORD": str(self.record),
            "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
        }
        self.procs: list[subprocess.Popen[str]] = []

    def worker(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chute", "worker", "worker_app:app", *args],
            cwd=self.tmp, env=self.vars, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.record.read_text().splitlines()]

    async def wait_for(self, what: str, timeout: float, count: int = 1) -> list[list[str]]:
        """Wait until ``count`` record lines start with ``what``."""
        with anyio.fail_after(timeout):
            while True:
                found = [ln for ln in self.lines() if " ".join(ln).startswith(what)]
                if len(found) >= count:
                    return found
                await anyio.sleep(0.02)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for proc in e.procs:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Something else holds its stderr open (a supervised worker it left behind).
            pytest.fail(f"process {proc.pid} left children running after it was killed")


async def stats(env: Env) -> chute.QueueStats:
    async with chute.App(env.url) as app:
        return await app.broker.stats("default")


async def test_killed_worker_job_is_redelivered_and_completes_on_attempt_2(env: Env) -> None:
    async with chute.App(env.url) as producer:
        await producer.task_ref("record").enqueue("k1", sleep_first=60)
    first = env.worker("--lease", "1.5")
    await env.wait_for("start k1 1", SPAWN)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = time.monotonic()
    env.worker("--lease", "1.5")
    await env.wait_for("done k1 2", SPAWN + 1.5 + 5)
    assert time.monotonic() - killed < SPAWN + 1.5 + 5
    assert ["done", "k1", "1"] not in [ln[:3] for ln in env.lines()]


async def test_sigterm_finishes_running_jobs_releases_the_rest_and_exits_0(env: Env) -> None:
    keys = [f"j{i}" for i in range(40)]
    async with chute.App(env.url) as producer:
        ref = producer.task_ref("record")
        await ref.enqueue_many([ref.call(k, sleep=0.2) for k in keys])
    worker = env.worker("-c", "4", "--grace", "20")
    await env.wait_for("done", SPAWN, count=8)
    worker.send_signal(signal.SIGTERM)
    _, log = worker.communicate(timeout=30)
    assert worker.returncode == 0, log
    assert "received SIGTERM" in log
    first = env.lines()
    started = {ln[1] for ln in first if ln[0] == "start"}
    finished = {ln[1] for ln in first if ln[0] == "done"}
    assert started == finished, "a running job was abandoned at SIGTERM"
    after = await stats(env)
    assert after.in_flight == 0, "held jobs must be released, not left to a lease expiry"
    assert after.ready == len(keys) - len(finished)
    # A second worker in burst mode drains the rest: nothing lost.
    drain = env.worker("--burst", "-c", "8")
    drain.communicate(timeout=60)
    assert drain.returncode == 0
    done = {ln[1] for ln in env.lines() if ln[0] == "done"}
    assert done == set(keys)


async def test_job_that_kills_its_worker_every_time_is_dead_lettered(env: Env) -> None:
    async with chute.App(env.url) as producer:
        await producer.task_ref("suicide").enqueue("poison")
        await producer.task_ref("record").enqueue_many(
            [producer.task_ref("record").call(f"ok{i}") for i in range(10)]
        )
    supervisor = env.worker("-p", "2", "--lease", "1", "--grace", "5")

    async def dead() -> bool:
        return (await stats(env)).dead == 1

    with anyio.fail_after(3 * (SPAWN + 1 + 5)):
        while not await dead():
            await anyio.sleep(0.1)
    assert len([ln for ln in env.lines() if ln[0] == "start" and ln[1] == "poison"]) == 3
    assert {ln[1] for ln in env.lines() if ln[0] == "done"} == {f"ok{i}" for i in range(10)}
    supervisor.send_signal(signal.SIGTERM)
    _, log = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0
    assert log.count("killed by SIGKILL; starting a new one") == 3
    async with chute.App(env.url) as app:
        (letter,) = await list_dead(app.broker, "default")
    assert letter.task == "suicide"
    assert letter.reason == "attempts exhausted by lost workers"


async def test_second_signal_exits_at_once(env: Env) -> None:
    async with chute.App(env.url) as producer:
        await producer.task_ref("record").enqueue("long", sleep=60)
    worker = env.worker("--grace", "60")
    await env.wait_for("start long", SPAWN)
    worker.send_signal(signal.SIGTERM)
    await anyio.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=10)
    assert worker.returncode == 128 + signal.SIGTERM


async def test_workers_stop_when_their_supervisor_is_killed(env: Env) -> None:
    async with chute.App(env.url) as producer:
        await producer.task_ref("record").enqueue("k", sleep=0.1)
    supervisor = env.worker("-p", "2")
    await env.wait_for("done k", SPAWN)
    supervisor.send_signal(signal.SIGKILL)
    # stderr reaches EOF only once every process holding it (the two workers) has exited.
    _, log = supervisor.communicate(timeout=60)
    assert log.count("started worker process") == 2
