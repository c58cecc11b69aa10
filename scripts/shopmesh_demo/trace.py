"""The demo's last step: print the run's trace as a span tree (`python -m shopmesh_stack trace <id>`).

The printer reads the trace backend's query API; the demo only runs it with the
same environment (so the same stack's ports). It is the one step allowed to fail
softly: the checkout has already happened, and a missing trace backend must not
turn a working mesh into a failed demo. Its exit status is reported, not raised.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

# Long enough for spans still in the services' export batches to reach the backend.
TRACE_PRINT_TIMEOUT_SECONDS = 120.0


def trace_command(trace_id: str) -> list[str]:
    return [sys.executable, "-m", "shopmesh_stack", "trace", trace_id]


def print_trace(trace_id: str, command: Sequence[str] | None = None) -> int:
    """Run the span-tree printer (its output goes straight to ours); its exit status, or -1 if it did not run."""
    argv = list(command) if command is not None else trace_command(trace_id)
    try:
        return subprocess.run(argv, check=False, timeout=TRACE_PRINT_TIMEOUT_SECONDS).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1
