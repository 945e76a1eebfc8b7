"""Every code block in README.md and docs/ runs (Python), parses (TOML) or uses real options."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chute.cli import app as cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_run(page: Path, tmp_path: Path) -> None:
    code = "\n\n".join(blocks(page, "python"))
    if not code:
        pytest.skip("no Python blocks")
    env = {k: v for k, v in os.environ.items() if k != "CHUTE_BROKER_URL"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"{page_id(page)}:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_toml_blocks_parse(page: Path) -> None:
    for body in blocks(page, "toml"):
        tomllib.loads(body)


def _cli_lines(page: Path) -> list[list[str]]:
    lines: list[list[str]] = []
    for body in blocks(page, "sh"):
        for line in body.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("chute "):
                lines.append(shlex.split(line)[1:])
    return lines


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_shell_examples_use_real_commands_and_options(page: Path) -> None:
    lines = _cli_lines(page)
    if not lines:
        pytest.skip("no chute command lines")
    runner = CliRunner()
    for argv in lines:
        words = [w for w in argv if not w.startswith("-")]
        # chute <command> [<subcommand>] APP ...: find the deepest command that has --help.
        path = words[:2] if words[:1] == ["dead"] else words[:1]
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, f"{page_id(page)}: `chute {' '.join(argv)}`: no such command"
        for option in (w.split("=", 1)[0] for w in argv if w.startswith("-")):
            assert option in result.stdout, (
                f"{page_id(page)}: `chute {' '.join(argv)}`: no option {option}"
            )


def test_the_broker_walkthrough_runs_the_suite(pytester: pytest.Pytester) -> None:
    page = ROOT / "docs" / "writing-a-broker.md"
    suite = [b for b in blocks(page, "python") if "BrokerConformance" in b]
    assert len(suite) == 1
    pytester.makepyfile(test_walkthrough=suite[0])
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-q",
        "-k", "round_trip or release or killed_consumer_loses_nothing or stats",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 7
