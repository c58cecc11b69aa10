"""Background processes the stack starts, remembered by pid file and stopped by pid.

A pid file holds the pid and the process start time (from /proc), so a pid
reused by an unrelated process after a reboot is never mistaken for ours and
never signalled. We write this instead of using a supervisor (supervisord,
honcho) because the stack must survive the tool's exit (`make up` returns) and
be stopped later by a different invocation (`make down`): that is a pid file
and a signal, smaller than configuring a daemon.

A test run's processes must not survive the run, even when it is SIGKILLed and
no finalizer runs: those are started with `die_with_parent`, so the kernel kills
them when the thread that started them exits (Linux's parent-death signal).
Those are all forked by one long-lived spawner thread, so a component started
from a short-lived thread (a test's `asyncio.to_thread`) does not die with it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The start time of a live process, or None if there is none (zombies count as gone).

    A process started by another invocation of the tool (or by the test run) is
    not our child: once it exits it stays a zombie until its own parent reaps it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces): state is field 3,
    # starttime field 22.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one component."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_file: Path
    pid_file: Path
    cwd: Path | None = None
    user: str | None = None
    # Killed by the kernel when the starting thread exits (tests); `make up`'s outlive the tool.
    die_with_parent: bool = False


@dataclass(frozen=True)
class Exit:
    """How a stopped process ended."""

    pid: int
    # Exited by itself within the timeout (else it was SIGKILLed).
    in_time: bool
    # Its exit code (negative: the signal) when it was our child and exited in time; else unknown.
    code: int | None


class ManagedProcess:
    """Start, find, and stop one background process by its pid file."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec

    def pid(self) -> int | None:
        """Our process's pid if it is running, else None (stale pid files are removed)."""
        try:
            pid_text, started = self.spec.pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        if _start_time(pid) != started:
            self.spec.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> int:
        """Start in its own session, output appended to the log file."""
        if (running := self.pid()) is not None:
            return running
        self.spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
        argv = list(self.spec.argv)
        if self.spec.die_with_parent:
            started: int = _spawner().submit(self._spawn, [*PARENT_DEATH_PREFIX, *argv]).result()
        else:
            started = self._spawn(argv)
        self.spec.pid_file.write_text(f"{started} {_start_time(started)}\n")
        return started

    def _spawn(self, argv: list[str]) -> int:
        # As root, components that refuse root (PostgreSQL) run as their own user,
        # exec'd directly so the recorded pid is the component's.
        user = self.spec.user
        with open(self.spec.log_file, "ab") as log:
            process = subprocess.Popen(
                argv,
                env=dict(self.spec.env),
                cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user is not None else None,
            )
        pid: int = process.pid
        return pid

    def stop(self, timeout: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Signal the process, wait for it to exit, SIGKILL after `timeout`. True if it was running."""
        return self.end(timeout, sig) is not None

    def end(self, timeout: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> Exit | None:
        """Like `stop`, telling how it ended; None if it was not running."""
        pid = self.pid()
        if pid is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        code: int | None = None
        while (alive := _start_time(pid) is not None) and time.monotonic() < deadline:
            code = _reap(pid) if code is None else code
            time.sleep(0.05)
        if alive:
            os.kill(pid, signal.SIGKILL)
            while _start_time(pid) is not None:
                _reap(pid)
                time.sleep(0.05)
        else:
            # Our child leaves a zombie (no start time) until reaped: its status is here.
            code = _reap(pid) if code is None else code
        self.spec.pid_file.unlink(missing_ok=True)
        return Exit(pid=pid, in_time=not alive, code=None if alive else code)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.spec.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# util-linux's setpriv arms the parent-death signal, then execs the component:
# no Python code runs between fork and exec (a preexec_fn can deadlock a threaded
# parent), and it runs after subprocess has switched to the component's user, which
# would otherwise clear the setting.
PARENT_DEATH_PREFIX = ("setpriv", "--pdeathsig", "KILL", "--")


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """The one thread that forks die-with-parent processes; it lives until the interpreter exits."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopmesh-spawner")


def _reap(pid: int) -> int | None:
    """Collect a child that has exited so it does not linger as a zombie; its exit code if it was ours."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if reaped == pid else None
