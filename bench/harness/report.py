"""Turn the runs' results into docs/benchmarks.md: facts, method, summary, a table per workload."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from systems import REFERENCE, SYSTEMS, System

from harness.workloads import WORKLOADS, Workload

__all__ = ["machine", "render"]

_BY_ID = {s.id: s for s in SYSTEMS}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    ram = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "load": os.getloadavg(),
    }


class Row:
    """One system's runs on one workload, summarised."""

    def __init__(self, system: System, workload: Workload, runs: list[dict[str, Any]]) -> None:
        self.system = system
        self.workload = workload
        self.runs = runs
        self.ok = [r for r in runs if r["status"] == "ok"]
        self.values = [float(r["value"]) for r in self.ok]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def extra(self, key: str) -> float | None:
        """The median of ``key`` over the successful runs (``value``: the main figure)."""
        values = [float(r[key]) for r in self.ok if r.get(key) is not None]
        return statistics.median(values) if values else None

    @property
    def problem(self) -> str | None:
        """Why some or all runs gave no number."""
        bad = [r for r in self.runs if r["status"] != "ok"]
        if not bad:
            return None
        first = bad[0]
        reason = f"{first['status']}: {first.get('reason', '')}".strip().rstrip(":")
        if self.ok:
            return f"{len(bad)} of {len(self.runs)} runs {reason}"
        return reason


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "tasks/s":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "ms":
        return f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _advantage(row: Row, best: Row | None, key: str = "value") -> float | None:
    """How many times better than ``best`` (>1: better), whatever the metric's direction."""
    if best is None:
        return None
    mine, theirs = row.extra(key), best.extra(key)
    if not mine or not theirs:
        return None
    return mine / theirs if row.workload.better == "higher" else theirs / mine


def _best_peer(rows: list[Row], semantics: str, key: str = "value") -> Row | None:
    peers = [
        r
        for r in rows
        if r.system.project not in ("chute", "ceiling")
        and r.system.semantics == semantics
        and r.extra(key) is not None
    ]
    return _best(peers, key)


def _best(rows: list[Row], key: str = "value") -> Row | None:
    if not rows:
        return None
    pick = max if rows[0].workload.better == "higher" else min
    return pick(rows, key=lambda r: r.extra(key) or 0.0)


def _rows(results: list[dict[str, Any]], workload: Workload) -> list[Row]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r["workload"] == workload.id and r["system"] in _BY_ID:
            grouped[r["system"]].append(r)
    return [Row(s, workload, grouped[s.id]) for s in SYSTEMS if s.id in grouped]


def _ratio(row: Row, rows: list[Row], key: str = "value") -> str:
    if row.system.semantics == REFERENCE:
        return "–"
    adv = _advantage(row, _best_peer(rows, row.system.semantics, key), key)
    return "–" if adv is None else f"{adv:.2f}×"


def _table(rows: list[Row]) -> list[str]:
    workload = rows[0].workload
    unit = workload.unit
    w4 = workload.id == "w4"
    drains = workload.id.startswith(("w2", "w3"))
    head = ["system", "broker", "semantics"]
    if w4:
        head += ["p50 ms", "p95 ms", "p99 ms", "p50 range", "p50 vs best peer", "p99 vs best peer"]
    else:
        head += [f"median {unit}", "range (min–max)", "vs best peer"]
    if drains:
        head += ["startup s"]
    head += ["runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s = row.system
        cells = [f"`{s.id}`", s.broker if s.broker != "none" else "–", s.semantics]
        if row.median is None:
            cells += [f"**{row.problem}**"] + [""] * (len(head) - 5) + [f"0/{len(row.runs)}"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        spread = f"{_fmt(min(row.values), unit)}–{_fmt(max(row.values), unit)}"
        if w4:
            cells += [_fmt(row.extra(k), unit) for k in ("p50", "p95", "p99")]
            cells += [spread, _ratio(row, rows, "p50"), _ratio(row, rows, "p99")]
        else:
            cells += [_fmt(row.median, unit), spread, _ratio(row, rows)]
        if drains:
            cells.append(_fmt(row.extra("startup"), "s"))
        runs = f"{len(row.ok)}/{len(row.runs)}"
        if row.problem:
            runs += f" ({row.problem})"
        cells.append(runs)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _show(row: Row | None) -> str:
    if row is None:
        return "–"
    unit = row.workload.unit
    if row.workload.id == "w4":
        figure = f"p50 {_fmt(row.extra('p50'), unit)} / p99 {_fmt(row.extra('p99'), unit)} ms"
    else:
        figure = f"{_fmt(row.median, unit)} {unit}"
    return f"`{row.system.id}` {figure}"


def _summary(
    results: list[dict[str, Any]], workloads: list[Workload], by_server: bool = False
) -> list[str]:
    lines = [
        "| workload | server | semantics | chute | best peer | chute vs best peer |"
        if by_server
        else "| workload | semantics | best chute | best peer | chute vs best peer |",
        "|---|---|---|---|---|---|" if by_server else "|---|---|---|---|---|",
    ]
    for workload in workloads:
        every = _rows(results, workload)
        servers = sorted({r.system.broker for r in every} - {"none"}) if by_server else [""]
        for server in servers:
            rows = [r for r in every if r.system.broker == server] if by_server else every
            lines += _summary_lines(workload, rows, server)
    return lines


def _summary_lines(workload: Workload, rows: list[Row], server: str) -> list[str]:
    lines: list[str] = []
    for semantics in ("at-least-once", "at-most-once"):
        mine = [r for r in rows if r.system.project == "chute" and r.system.semantics == semantics]
        peer = _best_peer(rows, semantics)
        if not mine or peer is None:
            continue
        chute = _best([r for r in mine if r.median is not None])
        adv = _advantage(chute, peer) if chute else None
        ratio = "–" if adv is None else f"{adv:.2f}×"
        if workload.id == "w4" and chute:
            p99 = _advantage(chute, peer, "p99")
            ratio += f" (p99: {p99:.2f}×)" if p99 else ""
        shown = _show(chute) if chute else "no successful run"
        where = f" {server} |" if server else ""
        lines.append(
            f"| {workload.title} |{where} {semantics} | {shown} | {_show(peer)} | {ratio} |"
        )
    return lines


def render(meta: dict[str, Any], results: list[dict[str, Any]], method: str) -> str:
    """The whole markdown document."""
    m = meta["machine"]
    out = [
        "# Benchmarks",
        "",
        "chute against its peers on the same machine and the same servers. This file is "
        "generated by `nox -s bench` (`python bench/run.py`); edit `bench/harness/report.py` "
        "or `bench/harness/method.md`, not this file.",
        "",
        "## Where and when",
        "",
        f"- Date: {meta['date']} (took {meta['took'] / 60:.0f} min); command: `{meta['command']}`",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}",
        f"- Load average at start / end: {_load(m['load'])} / {_load(meta['load_end'])}"
        + (
            " (other work was running: expect noise)"
            if max(m["load"][0], meta["load_end"][0]) > 0.5
            else ""
        ),
        f"- {m['python']}; servers: {', '.join(meta['servers']) or 'none'}",
        f"- Repetitions: {meta['reps']} (W5: {meta['memory_reps']}), sizes: "
        + ", ".join(f"{w} {n:,}" for w, n in meta["sizes"].items()),
        f"- Packages: {', '.join(f'{k} {v}' for k, v in sorted(meta['versions'].items()))}",
        "",
        "## Summary: the best chute row against the best peer of the same semantics",
        "",
        "Ratios are medians against medians; above 1× chute is better (faster, lower latency, "
        "less memory), below 1× it is worse.",
        "",
        *_summary(results, [w for w in WORKLOADS if w.id in meta["workloads"]]),
        "",
        "## The same, server by server",
        "",
        "chute on each server against the best peer on that same server and semantics.",
        "",
        *_summary(results, [w for w in WORKLOADS if w.id in meta["workloads"]], by_server=True),
        "",
        "## Results per workload",
        "",
        "Median over the repetitions, the range (min–max) over them, and the ratio against the "
        "best peer of the same delivery semantics (above 1× better). Startup is the time "
        "from starting the worker process to its first completed task, included in the "
        "drain figures. A failed or timed-out run says so in place of its number.",
    ]
    for workload in WORKLOADS:
        rows = _rows(results, workload)
        if rows:
            out += ["", f"### {workload.title}", "", *_table(rows)]
    out += ["", method.strip(), ""]
    notes = [s for s in SYSTEMS if any(r["system"] == s.id for r in results)]
    out += [
        "",
        "## The systems and their settings",
        "",
        "| system | semantics | settings |",
        "|---|---|---|",
    ]
    out += [f"| `{s.id}` | {s.semantics} | {s.note} |" for s in notes]
    skipped = meta.get("skipped", {})
    if skipped:
        out += ["", "Not measured in this run:", ""]
        out += [f"- `{k}`: {v}" for k, v in skipped.items()]
    return "\n".join(out) + "\n"


def _load(load: list[float] | tuple[float, ...]) -> str:
    return f"{load[0]:.2f}"
