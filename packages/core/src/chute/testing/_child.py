"""Driving a consumer in another OS process from a test: spawn, watch, signal, kill."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from chute.broker import Ack
from chute.testing._harness import BrokerHarness

Event = dict[str, Any]


class ConsumerProcess:
    """A real consumer process (``chute.testing._consumer``) and the events it reports."""

    def __init__(
        self,
        harness: BrokerHarness,
        queue_name: str,
        *,
        ack: Ack,
        prefetch: int,
        lease: float,
        mode: str,
        die_on: bytes | None = None,
        limit: int | None = None,
    ) -> None:
        url = harness.url()
        assert url is not None
        argv = [
            sys.executable, "-m", "chute.testing._consumer",
            "--factory", harness.factory, "--url", url, "--queue", queue_name,
            "--ack", ack.value, "--prefetch", str(prefetch), "--lease", str(lease),
            "--mode", mode,
        ]  # fmt: skip
        if die_on is not None:
            argv += ["--die-on", die_on.hex()]
        if limit is not None:
            argv += ["--limit", str(limit)]
        env = dict(os.environ)
        # The child must import what the test process imports (a harness's broken broker).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, text=True,
        )  # fmt: skip
        self.events: list[Event] = []
        self._inbox: queue.Queue[Event | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._inbox.put(json.loads(line))
            except ValueError:
                self._stderr.append(line)
        self._inbox.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _drain(self) -> bool:
        """Move reported events into :attr:`events`; ``False`` once the process has ended."""
        alive = True
        while True:
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                return alive
            if event is None:
                alive = False
                self._inbox.put(None)
                return alive
            self.events.append(event)

    def describe(self) -> str:
        tail = "".join(self._stderr[-20:])
        return f"consumer pid {self.proc.pid} exit {self.proc.poll()}; stderr:\n{tail}"

    async def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float) -> None:
        """Wait until ``predicate(events)`` holds; fail with the child's stderr if it never does."""
        with anyio.move_on_after(timeout):
            while True:
                alive = self._drain()
                if predicate(self.events):
                    return
                if not alive:
                    break
                await anyio.sleep(0.01)
        self._drain()
        if predicate(self.events):
            return
        raise AssertionError(f"the consumer never reported what was expected; {self.describe()}")

    def got(self) -> list[Event]:
        self._drain()
        return [e for e in self.events if e["event"] == "got"]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.wait_exit(10)

    async def wait_exit(self, timeout: float) -> int:
        with anyio.fail_after(timeout):
            while self.proc.poll() is None:
                await anyio.sleep(0.01)
        self._drain()
        return self.proc.returncode

    async def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        await anyio.to_thread.run_sync(self.proc.wait)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
