"""The stack's parts of a hand-over (`Stack.roll`): a port shared with SO_REUSEPORT still
counts as taken for a normal start, and stopping a process tells how it ended."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from shopmesh_stack.components import port_free
from shopmesh_stack.procs import ManagedProcess, ProcessSpec
from tests.polling import wait_for


def test_a_listener_with_so_reuseport_makes_the_port_taken() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.listen()
        assert not port_free(port)
    assert port_free(port)


def managed(tmp_path: Path, code: str) -> ManagedProcess:
    ready = tmp_path / "ready"
    script = f"import pathlib, signal, sys, time\n{code}\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    process = ManagedProcess(
        ProcessSpec(
            name="sleeper",
            argv=[sys.executable, "-c", script],
            env={},
            log_file=tmp_path / "sleeper.log",
            pid_file=tmp_path / "sleeper.pid",
        )
    )
    process.start()
    wait_for(ready.exists, 30, "the process installed its SIGTERM handler")
    return process


def test_end_reports_a_clean_exit_of_our_child(tmp_path: Path) -> None:
    process = managed(tmp_path, "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))")
    pid = process.pid()
    ended = process.end(timeout=30)
    assert ended is not None and (ended.pid, ended.in_time, ended.code) == (pid, True, 0)
    assert not process.running() and process.end() is None


def test_end_kills_a_process_that_does_not_drain_in_time(tmp_path: Path) -> None:
    process = managed(tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    ended = process.end(timeout=0.5)
    assert ended is not None and not ended.in_time and ended.code is None
    assert not process.running()
