"""The benchmark harness still runs end to end (tiny counts, SQLite only) and reports honestly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_quick_run_on_sqlite_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--scale",
            "0.005",
            "--systems",
            "chute-sqlite-completion,ceiling-async",
            "--workloads",
            "w1-single,w2-default,w4",
            "--output",
            str(report),
            "--results",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (raw,) = tmp_path.glob("*.json")
    results = json.loads(raw.read_text())["results"]
    assert {(r["system"], r["workload"]) for r in results} == {
        ("chute-sqlite-completion", "w1-single"),
        ("chute-sqlite-completion", "w2-default"),
        ("chute-sqlite-completion", "w4"),
        ("ceiling-async", "w2-default"),
    }
    assert all(r["status"] == "ok" and r["value"] > 0 for r in results), results
    text = report.read_text()
    for heading in ("## Where and when", "## Method", "### W4 latency", "### W2 drain"):
        assert heading in text
    assert "| `chute-sqlite-completion` | sqlite | at-least-once |" in text


def _render(results: list[dict[str, object]]) -> str:
    sys.path.insert(0, str(BENCH))
    try:
        from harness import report
    finally:
        sys.path.remove(str(BENCH))
    meta = {
        "date": "today",
        "took": 60.0,
        "command": "python bench/run.py",
        "machine": report.machine(),
        "load_end": [0.0, 0.0, 0.0],
        "servers": [],
        "versions": {},
        "reps": 2,
        "memory_reps": 1,
        "sizes": {"w2-default": 100},
        "workloads": ["w2-default"],
    }
    return report.render(meta, results, "## Method\n")


def test_failed_runs_and_ratios_are_reported() -> None:
    def run(
        system: str, status: str, value: float | None = None, reason: str = ""
    ) -> dict[str, object]:
        return {
            "system": system,
            "workload": "w2-default",
            "status": status,
            "value": value,
            "reason": reason,
        }

    text = _render(
        [
            run("chute-redis-completion", "ok", 300.0),
            run("chute-redis-completion", "ok", 500.0),
            run("arq", "ok", 100.0),
            run("arq", "ok", 200.0),
            run("dramatiq-redis", "timeout", reason="7 done in 30 s"),
            run("dramatiq-redis", "failed", reason="worker exited 1"),
            run("rq", "ok", 50.0),
            run("rq", "failed", reason="worker exited 1"),
            run("streaq", "skipped", reason="not installed: streaq"),
        ]
    )
    # medians 400 vs the best at-least-once peer's 150: 2.67 times better
    assert "| `chute-redis-completion` | redis | at-least-once | 400 | 300–500 | 2.67× |" in text
    assert "| `dramatiq-redis` | redis | at-least-once | **timeout: 7 done in 30 s** |" in text
    assert "1 of 2 runs failed: worker exited 1" in text
    assert "**skipped: not installed: streaq**" in text
