"""Benchmark chute against its peers and write docs/benchmarks.md.

    python bench/run.py                       # everything: about 40 minutes on 2 cores
    python bench/run.py --quick               # one repetition, small counts
    python bench/run.py --systems 'chute-redis-*,arq' --workloads w2,w4 --reps 5
    python bench/run.py --list                # the systems and workloads
    python bench/run.py --render results.json # rewrite the report from saved results

Runs are interleaved (every selected system once per workload, then again, ...), each in
fresh processes on a flushed server and bounded by a timeout. Raw results go to
``bench/results/<date>.json``; the report to ``docs/benchmarks.md`` unless ``--output``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import report  # noqa: E402
from harness.servers import server_for  # noqa: E402
from harness.workloads import WORKLOADS, Workload, applies, run  # noqa: E402
from systems import SYSTEMS, System, get, select  # noqa: E402

ROOT = BENCH.parent
QUICK_SCALE = 0.05


def _problem(system: System) -> str | None:
    missing = []
    for dist in system.requires:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        return "not installed: " + ", ".join(missing)
    if system.broker == "none":
        return None
    return server_for(system.broker).problem()


def _versions(systems: list[System]) -> dict[str, str]:
    out: dict[str, str] = {}
    extra = {"redis": "redis", "nats": "nats-py", "rabbitmq": "aiormq"}
    for system in systems:
        dists = [*system.requires]
        if system.broker in extra:
            dists.append(extra[system.broker])
        for dist in dists:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
    return out


def _workloads(selection: str | None) -> list[Workload]:
    if not selection:
        return list(WORKLOADS)
    wanted = [w.strip().lower() for w in selection.split(",") if w.strip()]
    chosen = [w for w in WORKLOADS if any(w.id.startswith(p) for p in wanted)]
    if not chosen or any(not any(w.id.startswith(p) for w in WORKLOADS) for p in wanted):
        raise SystemExit(f"--workloads {selection!r}: known {', '.join(w.id for w in WORKLOADS)}")
    return chosen


def _list() -> None:
    print("systems (* = run by default):")
    for s in SYSTEMS:
        star = "*" if s.by_default else " "
        print(f"  {star} {s.id:24} {s.broker:9} {s.semantics:14} {s.note}")
    print("workloads:")
    for w in WORKLOADS:
        print(f"    {w.id:12} {w.n:>7,} tasks  {w.title} ({w.unit}, {w.better} is better)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", help="comma-separated ids or shell patterns (see --list)")
    parser.add_argument("--workloads", help="comma-separated ids or prefixes: w1,w2-tuned,w5")
    parser.add_argument("--reps", type=int, help="repetitions of W1–W4 (default 3, quick 1)")
    parser.add_argument("--memory-reps", type=int, help="repetitions of W5 (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help=f"1 repetition, counts × {QUICK_SCALE}"
    )
    parser.add_argument("--scale", type=float, help="multiply every task count by this")
    parser.add_argument("--memory-tasks", type=int, help="tasks of W5 (default 100,000)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="raw JSON folder")
    parser.add_argument("--render", type=Path, help="only rewrite the report from a results file")
    parser.add_argument("--list", action="store_true", help="list systems and workloads")
    parser.add_argument(
        "--resume", type=Path, help="continue an interrupted run from its results file"
    )
    ns = parser.parse_args(argv)
    if ns.list:
        _list()
        return 0
    method = (BENCH / "harness" / "method.md").read_text()
    if ns.render:
        saved = json.loads(ns.render.read_text())
        ns.output.write_text(report.render(saved["meta"], saved["results"], method))
        print(f"wrote {ns.output}")
        return 0

    try:
        systems = select([p.strip() for p in ns.systems.split(",")] if ns.systems else None)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    workloads = _workloads(ns.workloads)
    reps = ns.reps or (1 if ns.quick else 3)
    memory_reps = ns.memory_reps or 1
    scale = ns.scale or (QUICK_SCALE if ns.quick else 1.0)
    sizes = {w.id: max(10, int(w.n * scale)) for w in workloads}
    for w in workloads:
        if ns.memory_tasks and w.id.startswith("w5"):
            sizes[w.id] = ns.memory_tasks

    skipped = {s.id: p for s in systems if (p := _problem(s))}
    active = [s for s in systems if s.id not in skipped]
    brokers = sorted({s.broker for s in active} - {"none"})
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
        "servers": [server_for(b).version() for b in brokers],
        "versions": _versions(active),
        "reps": reps,
        "memory_reps": memory_reps,
        "sizes": sizes,
        "workloads": [w.id for w in workloads],
        "skipped": skipped,
    }
    results: list[dict[str, Any]] = [
        {"system": s, "workload": w.id, "status": "skipped", "reason": why}
        for s, why in skipped.items()
        for w in workloads
        if applies(get(s), w)
    ]
    for sid, why in skipped.items():
        print(f"skip {sid}: {why}", file=sys.stderr)

    plan = [
        (rep, w, s)
        for rep in range(max(reps, memory_reps))
        for w in workloads
        if rep < (memory_reps if w.id.startswith("w5") else reps)
        for s in active
        if applies(s, w)
    ]
    started = time.monotonic()
    ns.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    raw = ns.results / f"{stamp}.json"
    done: set[tuple[str, str, int]] = set()
    if ns.resume:  # same selection expected; keep what was measured, run the rest
        raw = ns.resume
        saved = json.loads(raw.read_text())
        started -= saved["meta"].get("took", 0.0)
        meta.update({k: saved["meta"][k] for k in ("date", "command", "machine", "servers")})
        results = saved["results"]
        done = {(r["system"], r["workload"], r["rep"]) for r in results if "rep" in r}
    with tempfile.TemporaryDirectory(prefix="chute-bench-") as work:
        missing = {(r["system"], r["workload"]) for r in results if r["status"] == "n/a"}
        for i, (rep, workload, system) in enumerate(plan, 1):
            if (system.id, workload.id) in missing or (system.id, workload.id, rep) in done:
                continue  # a feature the system lacks does not appear on a later repetition
            shutil.rmtree(Path(work) / f"run-{i - 1}", ignore_errors=True)
            folder = Path(work) / f"run-{i}"  # fresh, whatever a stray process still writes
            result = run(system, workload, server_for(system.broker), folder, sizes[workload.id])
            result["rep"] = rep
            results.append(result)
            if result["status"] == "n/a":
                missing.add((system.id, workload.id))
            shown = result.get("value")
            what = (
                f"{shown:,.1f} {workload.unit}" if shown is not None else result.get("reason", "")
            )
            print(
                f"[{i}/{len(plan)}] rep {rep + 1} {workload.id:10} {system.id:24} "
                f"{result['status']:7} {what} ({result['took']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            meta["took"] = time.monotonic() - started
            meta["load_end"] = report.machine()["load"]
            raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    meta["took"] = time.monotonic() - started
    meta["load_end"] = report.machine()["load"]
    raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    ns.output.parent.mkdir(parents=True, exist_ok=True)
    ns.output.write_text(report.render(meta, results, method))
    print(f"wrote {ns.output} and {raw}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
