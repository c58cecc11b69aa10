"""The test stack itself: nothing of it outlives the test run or the test that started it.

Components die with the run even when it is SIGKILLed (no finalizer runs); an
extra component a test starts is stopped when the test fails; the per-test
timeout never fires inside the session stack's own start and stop.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from shopmesh_stack.components import port_open
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.extra_edge import edge_ports, running_edge
from tests.integration.processes import session_members
from tests.polling import wait_for


def test_components_die_with_a_sigkilled_test_run(stack: Stack, tmp_path: Path) -> None:
    settings = replace(stack.settings, ports=edge_ports(stack))
    assert settings.die_with_parent
    args_file, pids_file = tmp_path / "args.pickle", tmp_path / "pids.json"
    args_file.write_bytes(pickle.dumps((settings, stack.installed)))
    parent = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.orphaning_parent", str(args_file), str(pids_file)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    sessions: set[int] = set()
    try:
        wait_for(
            lambda: pids_file.exists() or parent.poll() is not None, 120, "the stand-in run started its components"
        )
        assert parent.poll() is None, "the stand-in run failed to start its components"
        sessions = set(json.loads(pids_file.read_text()).values())
        alive = session_members(sessions)
        assert sessions <= set(alive), alive
        assert "envoy" in alive.values(), alive  # the real Envoy behind its keeper

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        wait_for(lambda: not session_members(sessions), 30, "every process of the killed run gone")
        assert not port_open(settings.ports.edge)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=30)
        for pid in session_members(sessions):  # only if the test failed: never leave them behind
            os.kill(pid, signal.SIGKILL)


def test_an_extra_edge_is_stopped_when_its_test_fails(stack: Stack) -> None:
    started: list[int | None] = []
    with pytest.raises(RuntimeError, match="the test failed"), running_edge(stack, "envoy-failing") as edge:
        started.append(edge.process.pid())
        assert port_open(edge.port)
        raise RuntimeError("the test failed")
    keeper = started[0]
    assert keeper is not None
    assert session_members({keeper}) == {}
    assert not port_open(edge.port)


def test_the_per_test_timeout_covers_only_test_functions(request: pytest.FixtureRequest) -> None:
    """The session stack's start and stop (fixture code) have their own deadlines instead."""
    assert request.config.getini("timeout_func_only") is True
    assert float(request.config.getini("timeout")) > 0
