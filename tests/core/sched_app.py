"""An app with a task every second, for tests that run several real workers."""

from __future__ import annotations

import os

import chute

app = chute.App()  # CHUTE_BROKER_URL, set by the test


@app.every(seconds=1, name="tick")
def tick() -> None:
    job = chute.current_job()
    with open(os.environ["CHUTE_TEST_RECORD"], "a") as f:
        f.write(f"{job.headers['chute-slot']} {job.id} {os.getpid()}\n")
