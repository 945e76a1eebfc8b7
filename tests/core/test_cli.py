"""The command line: one clear line per user error, and commands that do what they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chute.cli import app as cli

pytestmark = pytest.mark.sqlite

APP = """
import chute
app = chute.App()

@app.task(name="add")
def add(x: int, y: int = 0) -> int:
    return x + y

@app.task(name="boom", max_attempts=1)
def boom() -> None:
    raise RuntimeError("nope")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tasks.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CHUTE_BROKER_URL", f"sqlite:///{tmp_path / 'b.sqlite3'}")
    sys.modules.pop("tasks", None)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nowhere:app", "cannot import 'nowhere'"),
        ("tasks:nope", "module 'tasks' has no attribute 'nope'"),
        ("tasks:add", "is a SyncTask, not a chute.App"),
        (":app", "not an app path"),
    ],
)
def test_bad_app_paths_are_one_line(project: Path, path: str, message: str) -> None:
    code, out, err = run("queues", path)
    assert code == 1
    assert message in err
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_unknown_task_and_bad_arguments(project: Path) -> None:
    code, _, err = run("enqueue", "tasks:app", "sub")
    assert code == 1
    assert "no task named 'sub' (registered: add, boom)" in err
    code, _, err = run("enqueue", "tasks:app", "add", "--args", '["one"]')
    assert code == 1
    assert "parameter 'x'" in err
    code, _, err = run("enqueue", "tasks:app", "add", "--args", "{not json")
    assert code == 1
    assert "must be JSON" in err


def test_unreachable_broker_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUTE_BROKER_URL", "sqlite:////proc/no/such/dir/b.sqlite3")
    sys.modules.pop("tasks", None)
    code, out, err = run("queues", "tasks:app")
    assert code == 1
    assert "cannot open SQLite broker" in err
    assert "Traceback" not in out + err


def test_enqueue_work_inspect_requeue_purge(project: Path) -> None:
    assert run("enqueue", "tasks:app", "add", "--args", "[1, 2]")[0] == 0
    code, job_id, _ = run("enqueue", "tasks:app", "boom", "--delay", "0")
    assert code == 0
    assert len(job_id.strip()) == 26
    out = run("queues", "tasks:app")[1]
    assert out.splitlines()[1].split() == ["default", "2", "0", "0", "0"]

    worker = subprocess.run(
        [sys.executable, "-m", "chute", "worker", "tasks:app", "--burst"],
        cwd=project, env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert "1 succeeded, 0 retried, 1 dead-lettered" in worker.stderr

    listing = run("dead", "list", "tasks:app")[1]
    assert job_id.strip() in listing
    assert "RuntimeError: nope" in listing
    assert run("dead", "requeue", "tasks:app")[1].strip() == "requeued 1 dead letter(s)"
    assert run("queues", "tasks:app")[1].splitlines()[1].split() == ["default", "1", "0", "0", "0"]
    assert run("dead", "purge", "tasks:app")[1].strip() == "purged 0 dead letter(s)"


def test_brokers_lists_installed_plugins() -> None:
    code, out, _ = run("brokers")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "acks=completion,receipt" in lines["sqlite://"]
    assert "shared=False" in lines["memory://"]


def test_help_lists_every_command() -> None:
    out = run("--help")[1]
    for command in ("worker", "enqueue", "queues", "dead", "brokers"):
        assert command in out
