"""An app for tests that run real worker processes. Every job records what it did."""

from __future__ import annotations

import os
import signal
import time

import chute

app = chute.App()  # CHUTE_BROKER_URL, set by the test


def _record(line: str) -> None:
    with open(os.environ["CHUTE_TEST_RECORD"], "a") as f:
        f.write(f"{line} {os.getpid()}\n")


@app.task(name="record", max_attempts=5)
def record(key: str, sleep: float = 0.0, sleep_first: float = 0.0) -> None:
    attempt = chute.current_job().attempt
    _record(f"start {key} {attempt}")
    time.sleep(sleep + (sleep_first if attempt == 1 else 0.0))
    _record(f"done {key} {attempt}")


@app.task(name="suicide", max_attempts=3)
def suicide(key: str) -> None:
    _record(f"start {key} {chute.current_job().attempt}")
    os.kill(os.getpid(), signal.SIGKILL)
