"""``chute worker -p N``: run N worker processes and replace any that dies."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("chute.supervisor")

# A child that dies sooner than this after starting counts as a crash loop: back off.
_QUICK_DEATH = 2.0
_MAX_BACKOFF = 30.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies, however it dies.

    Children run in their own session (so a terminal's Ctrl-C reaches only the supervisor),
    and would otherwise outlive a supervisor killed with SIGKILL. Linux only; elsewhere a
    no-op.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    """Keeps ``processes`` copies of ``argv`` running until told to stop.

    The first SIGTERM or SIGINT is passed on to every child (each stops gracefully); the
    supervisor waits up to ``grace`` seconds plus a margin, then kills what remains. A second
    signal kills the children at once.
    """

    def __init__(self, argv: list[str], processes: int, grace: float) -> None:
        self.argv = argv
        self.processes = processes
        self.grace = grace
        self.children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.stopping = False
        self.signals = 0
        self.backoff = 0.0

    def _spawn(self, slot: int) -> None:
        # Its own session: a Ctrl-C at the terminal reaches the supervisor only, which then
        # stops each child once, instead of each child seeing two signals and quitting hard.
        proc = subprocess.Popen(
            [sys.executable, "-m", "chute", *self.argv],
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children[slot] = (proc, time.monotonic())
        log.info("started worker process %d (slot %d)", proc.pid, slot)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.signals += 1
        if self.signals == 1:
            self.stopping = True
            log.info("stopping %d worker processes (signal again to kill them)", len(self.children))
            for proc, _ in self.children.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        else:
            for proc, _ in self.children.values():
                if proc.poll() is None:
                    proc.kill()

    def run(self) -> int:
        """Supervise until stopped; the exit status is 0 after a graceful stop."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        while not self.stopping:
            time.sleep(0.2)
            for slot, (proc, started) in list(self.children.items()):
                code = proc.poll()
                if code is None or self.stopping:
                    continue
                quick = time.monotonic() - started < _QUICK_DEATH
                self.backoff = min(_MAX_BACKOFF, max(0.5, self.backoff * 2)) if quick else 0.0
                log.warning(
                    "worker process %d %s; starting a new one%s",
                    proc.pid,
                    _describe(code),
                    f" in {self.backoff:.1f} s" if self.backoff else "",
                )
                if self.backoff:
                    time.sleep(self.backoff)
                if not self.stopping:
                    self._spawn(slot)
        deadline = time.monotonic() + self.grace + 10
        for proc, _ in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        return 0
