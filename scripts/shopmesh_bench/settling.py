"""When a checkout step may start: the work the step before left behind is done.

Pure polling on two probes (unsettled payments, the stack's CPU), so it is tested
without a stack and without the benchmarks' chart dependencies.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shopmesh_bench.host import log

# The stack counts as settled when its CPU over one window is back near its idle level.
SETTLE_WINDOW_SECONDS = 2.0
SETTLE_DEADLINE_SECONDS = 300.0


def settle(unsettled: Callable[[], int], cores: Callable[[], float], idle_cores: float) -> float:
    """Poll until `unsettled()` is 0 and `cores()` (one window each) is within 1.5x (or 0.1 core) of idle.

    Unsettled payments first: the reconciler works in passes, so a quiet CPU window alone can fall
    between two of them. Gives up at SETTLE_DEADLINE_SECONDS; returns the seconds it waited.
    """
    started = time.monotonic()
    settled_at = max(idle_cores * 1.5, idle_cores + 0.1)
    while True:
        left = unsettled()
        if left == 0 and cores() <= settled_at:
            break
        if time.monotonic() - started > SETTLE_DEADLINE_SECONDS:
            log(f"the stack did not settle in {SETTLE_DEADLINE_SECONDS:.0f} s ({left} payments unsettled); going on")
            break
        if left:
            time.sleep(SETTLE_WINDOW_SECONDS)
    return time.monotonic() - started
