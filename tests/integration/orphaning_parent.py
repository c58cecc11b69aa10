"""A stand-in for a test run that gets SIGKILLed: starts components as the test stack does, then waits.

`python -m tests.integration.orphaning_parent ARGS_PICKLE PIDS_JSON`: unpickles
(settings, installed), starts an extra Envoy edge (behind its keeper) and a
process running as another user when root (as PostgreSQL does), writes their
pids to PIDS_JSON, and sleeps until it is killed.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

from shopmesh_stack.components import Edge
from shopmesh_stack.procs import ManagedProcess, ProcessSpec
from shopmesh_stack.stack import Stack


def main() -> None:
    args_file, pids_file = Path(sys.argv[1]), Path(sys.argv[2])
    settings, installed = pickle.loads(args_file.read_bytes())
    stack = Stack(settings, installed)
    edge = Edge(settings, installed, name="envoy-orphan", rate_limit_overrides="")
    stack.start(edge)
    other_user = ManagedProcess(
        ProcessSpec(
            name="other-user",
            argv=["sleep", "600"],
            env={"PATH": "/usr/bin:/bin"},
            log_file=settings.log_dir / "other-user.log",
            pid_file=settings.run_dir / "other-user.pid",
            user="postgres" if os.geteuid() == 0 else None,
            die_with_parent=settings.die_with_parent,
        )
    )
    pids = {"edge": edge.process.pid(), "other_user": other_user.start()}
    partial = pids_file.with_suffix(".partial")
    partial.write_text(json.dumps(pids))
    partial.rename(pids_file)
    while True:
        time.sleep(60)  # until killed


if __name__ == "__main__":
    main()
