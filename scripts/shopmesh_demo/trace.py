"""The demo's last step: print the run's trace as a span tree (`python -m shopmesh_stack trace <id>`).

The printer reads the trace backend's query API (Jaeger, started by the stack);
the demo runs it with the same environment (so the same stack's ports) and waits
until the trace stops growing, since services export their spans in batches. Its
exit status is the step's outcome: a trace that cannot be printed fails the demo.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

# How long the printer waits for the trace to be complete (spans still in export batches).
TRACE_WAIT_SECONDS = 20.0
TRACE_PRINT_TIMEOUT_SECONDS = 120.0


def trace_command(trace_id: str) -> list[str]:
    return [sys.executable, "-m", "shopmesh_stack", "trace", trace_id, "--wait", str(TRACE_WAIT_SECONDS)]


def print_trace(trace_id: str, command: Sequence[str] | None = None) -> int:
    """Run the span-tree printer (its output goes straight to ours); its exit status, or -1 if it did not run."""
    argv = list(command) if command is not None else trace_command(trace_id)
    try:
        return subprocess.run(argv, check=False, timeout=TRACE_PRINT_TIMEOUT_SECONDS).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1
