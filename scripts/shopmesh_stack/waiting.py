"""Wait for a component to become ready: poll a check until a deadline.

Fails fast when the component's process has died, and the error names the
component and its log file, with the log's last lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shopmesh_stack.procs import ManagedProcess


class StartError(RuntimeError):
    """A component did not become ready."""


def wait_ready(name: str, check: Callable[[], bool], process: ManagedProcess | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # a failing probe means "not yet"
            last_error = exc
        if process is not None and not process.running():
            raise StartError(_explain(name, "exited during start", process))
        time.sleep(0.2)
    detail = f"not ready after {timeout:.0f}s" + (f" (last probe error: {last_error})" if last_error else "")
    raise StartError(_explain(name, detail, process))


def _explain(name: str, what: str, process: ManagedProcess | None) -> str:
    if process is None:
        return f"{name}: {what}"
    return f"{name}: {what}; log: {process.spec.log_file}\n--- last lines ---\n{process.tail()}"
