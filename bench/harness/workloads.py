"""The workloads W1–W5 and how one run of one system is carried out.

Every run happens in a fresh directory, on a freshly flushed server, in fresh processes (a
producer, then a worker, each a new interpreter), and every wait is bounded. A run returns a
result whatever happens: ``ok`` with its numbers, or ``failed`` / ``timeout`` / ``n/a`` with the
reason, which the report shows in place of the numbers.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from systems import System

from harness import probe
from harness.servers import QUEUE, Server, clean_dir

__all__ = ["WORKLOADS", "Workload", "applies", "run"]

CHILD = Path(__file__).resolve().parent.parent / "child.py"


@dataclass(frozen=True)
class Workload:
    """One column group of the report.

    Attributes:
        id: what ``--workloads`` matches (by prefix: ``w2`` selects both W2 variants).
        title: the report's heading.
        unit: of the main value.
        better: ``higher`` or ``lower``.
        n: tasks at full size.
    """

    id: str
    title: str
    unit: str
    better: str
    n: int


WORKLOADS = [
    Workload("w1-single", "W1 enqueue, one call per task", "tasks/s", "higher", 20_000),
    Workload("w1-batch", "W1 enqueue, batch API (1,000 per call)", "tasks/s", "higher", 20_000),
    Workload("w2-default", "W2 drain, default settings", "tasks/s", "higher", 20_000),
    Workload("w2-tuned", "W2 drain, tuned concurrency", "tasks/s", "higher", 20_000),
    Workload("w3", "W3 I/O-bound: 10 ms tasks, concurrency 100", "s", "lower", 5_000),
    Workload("w4", "W4 latency at a steady 500 tasks/s", "ms", "lower", 2_000),
    Workload("w5-drained", "W5 worker RSS after draining", "MiB", "lower", 100_000),
    Workload("w5-delayed", "W5 worker RSS with delayed tasks pending", "MiB", "lower", 100_000),
]


class RunFailed(Exception):
    def __init__(self, status: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


@dataclass
class Run:
    """Everything one run needs."""

    system: System
    workload: Workload
    server: Server
    dir: Path
    n: int
    timeout: float

    @property
    def url(self) -> str:
        return self.server.run_url(self.dir)

    def spec(self, role: str, **fields: Any) -> dict[str, Any]:
        return {"system": self.system.id, "role": role, "url": self.url, "queue": QUEUE, **fields}

    def env(self, target: int, task: str = "noop") -> dict[str, str]:
        env = dict(os.environ)
        env.update(BENCH_DIR=str(self.dir), BENCH_TARGET=str(target), BENCH_TASK=task)
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        return env

    def start(
        self, spec: dict[str, Any], env: dict[str, str], name: str
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(spec)],
            env=env,
            stdout=(self.dir / f"{name}.out").open("wb"),
            stderr=(self.dir / f"{name}.err").open("wb"),
            start_new_session=True,
        )

    def tail(self, name: str, lines: int = 3) -> str:
        text = ""
        for suffix in ("err", "out"):
            path = self.dir / f"{name}.{suffix}"
            if path.exists():
                text += path.read_text(errors="replace")
        useful = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(useful[-lines:]) or "no output"

    def child(self, spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Run a producer to completion and return its result."""
        name = f"{spec['role']}-{len(list(self.dir.glob('*.out')))}"
        proc = self.start(spec, self.env(0), name)
        try:
            proc.wait(timeout or self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise RunFailed(
                "timeout", f"{spec['role']} took over {timeout or self.timeout:.0f} s"
            ) from None
        out = (self.dir / f"{name}.out").read_text(errors="replace")
        for line in out.splitlines():
            if line.startswith("BENCH-RESULT "):
                result: dict[str, Any] = json.loads(line.removeprefix("BENCH-RESULT "))
                if result.get("status"):
                    raise RunFailed(result["status"], result.get("reason", ""))
                return result
        raise RunFailed("failed", f"{spec['role']} exited {proc.returncode}: {self.tail(name)}")

    def worker(
        self, settings: dict[str, Any], target: int, task: str = "noop"
    ) -> tuple[subprocess.Popen[bytes], float]:
        started = time.time()
        proc = self.start(self.spec("work", settings=settings), self.env(target, task), "worker")
        return proc, started

    def wait_done(self, proc: subprocess.Popen[bytes], timeout: float | None = None) -> float:
        """Wait for the target completion; its time, or RunFailed (exit, timeout)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        done = self.dir / "done"
        while True:
            if done.exists():
                return float(done.read_text())
            if proc.poll() is not None:
                time.sleep(0.05)  # a last completion racing the exit
                if done.exists():
                    continue
                raise RunFailed(
                    "failed",
                    f"worker exited {proc.returncode} after {self.count()} of the tasks: "
                    + self.tail("worker"),
                )
            if time.monotonic() > deadline:
                raise RunFailed(
                    "timeout",
                    f"{self.count():,} done in {timeout or self.timeout:.0f} s",
                    done=self.count(),
                )
            time.sleep(0.02)

    def count(self) -> int:
        path = self.dir / "count"
        return path.stat().st_size if path.exists() else 0

    def first(self) -> float | None:
        stamps = [float(p.read_text()) for p in self.dir.glob("first.*")]
        return min(stamps) if stamps else None


def _tree(pid: int) -> list[int]:
    """A process and all its descendants, whatever process group they moved to."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # rq's work horses leave the worker's process group: kill the tree, then the group.
    pids = _tree(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tree_rss(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB."""
    total = 0
    for current in _tree(pid):
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _settle_rss(pid: int, limit: float = 20.0) -> float:
    """RSS once it stops moving (four samples 0.5 s apart within 2 %), or after ``limit``."""
    samples: list[float] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        samples.append(_tree_rss(pid))
        last = samples[-4:]
        if len(last) == 4 and max(last) - min(last) <= 0.02 * max(last):
            break
        time.sleep(0.5)
    return samples[-1]


# -- the workloads ------------------------------------------------------------------------


def _enqueue(run: Run, mode: str) -> dict[str, Any]:
    result = run.child(run.spec("send", task="noop", n=run.n, mode=mode))
    return {"value": run.n / result["elapsed"]}


def _drain(run: Run, settings: dict[str, Any], task: str) -> dict[str, Any]:
    run.child(run.spec("send", task=task, n=run.n, mode="fill"))
    proc, started = run.worker(settings, run.n, task)
    try:
        last = run.wait_done(proc)
    finally:
        _kill(proc)
    first = run.first()
    extra = {
        "startup": first - started if first else None,
        "after_first": last - (first or started),
    }
    return {"elapsed": last - started, **extra}


def _latency(run: Run) -> dict[str, Any]:
    proc, _ = run.worker({}, run.n + 1)
    try:
        try:
            paced = run.child(run.spec("pace", n=run.n, rate=500, warmup=run.timeout / 2))
        except RunFailed:
            if proc.poll() is not None:  # the worker's failure is the one to report
                run.wait_done(proc)
            raise
        run.wait_done(proc)
    finally:
        _kill(proc)
    ms = sorted(v * 1000 for v in probe.latency(run.dir))
    if len(ms) < run.n:
        raise RunFailed("failed", f"only {len(ms)} of {run.n} latencies recorded")
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "value": cuts[49],
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "rate": paced["rate"],
    }


def _memory(run: Run, delayed: bool) -> dict[str, Any]:
    settings = run.system.tuned
    if delayed:
        run.child(run.spec("send", task="noop", n=run.n, mode="fill", delay=3600.0))
        run.child(run.spec("send", task="noop", n=1, mode="single"))
        target = 1
    else:
        run.child(run.spec("send", task="noop", n=run.n, mode="fill"))
        target = run.n
    proc, _ = run.worker(settings, target)
    try:
        run.wait_done(proc)
        rss = _settle_rss(proc.pid) if delayed else _tree_rss(proc.pid)
    finally:
        _kill(proc)
    return {"value": rss}


def applies(system: System, workload: Workload) -> bool:
    """Whether the workload means anything for the system (the ceilings have no queue)."""
    return system.broker != "none" or workload.id.startswith(("w2", "w3"))


def _measure(run: Run) -> dict[str, Any]:
    wid, system = run.workload.id, run.system
    if wid == "w1-single":
        return _enqueue(run, "single")
    if wid == "w1-batch":
        return _enqueue(run, "batch")
    if wid in ("w2-default", "w2-tuned"):
        result = _drain(run, system.tuned if wid == "w2-tuned" else {}, "noop")
        return {"value": run.n / result["elapsed"], **result}
    if wid == "w3":
        if not system.io:
            raise RunFailed("n/a", "no concurrency within one worker process")
        result = _drain(run, system.io, "sleep")
        return {"value": result["elapsed"], **result}
    if wid == "w4":
        return _latency(run)
    if wid in ("w5-drained", "w5-delayed"):
        return _memory(run, wid == "w5-delayed")
    raise ValueError(wid)


def timeout_for(workload: Workload, n: int) -> float:
    """The bound of each wait in a run, scaled with its size (generous: a loaded machine)."""
    per_task = {"w1": 1 / 150, "w2": 1 / 300, "w3": 1 / 100, "w4": 1 / 100, "w5": 1 / 400}
    return max(30.0, n * per_task[workload.id[:2]])


def run(system: System, workload: Workload, server: Server, folder: Path, n: int) -> dict[str, Any]:
    """One run of one system on one workload, in ``folder``; always returns a result."""
    record: dict[str, Any] = {"system": system.id, "workload": workload.id, "n": n}
    started = time.monotonic()
    try:
        clean_dir(folder)
        server.flush(folder)
        record.update(
            status="ok",
            **_measure(Run(system, workload, server, folder, n, timeout_for(workload, n))),
        )
    except RunFailed as failure:
        record.update(status=failure.status, reason=failure.reason, **failure.extra)
    except Exception as error:  # the harness's own trouble with this system: a row, not a crash
        record.update(status="failed", reason=f"{type(error).__name__}: {error}")
    finally:
        try:
            server.flush(folder)
        except Exception as error:
            record.setdefault("reason", f"flush after the run failed: {error}")
    record["took"] = time.monotonic() - started
    return record
