"""One real stack per test session: PostgreSQL, Kafka, FerretDB, localstripe, the
five services and Envoy, in a temporary data directory on free ports.

Started once, stopped at the end of the session, also on failure, Ctrl-C or
SIGTERM, so nothing of ours outlives the run. A component that cannot start
fails the session: nothing is skipped.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from shopmesh_stack.settings import StackSettings
from shopmesh_stack.stack import Stack

# Per-instance service settings: tests vary these, never a developer's stack.
TEST_SERVICE_ENV = {
    "SHOPMESH_HEALTH_PROBE_INTERVAL_SECONDS": "0.2",
    "SHOPMESH_DRAIN_GRACE_SECONDS": "2",
    "SHOPMESH_LOG_LEVEL": "info",
    # A reservation whose order is never seen is released after this long (test_inventory's orphan test).
    "SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS": "4",
    "SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS": "0.5",
}


# The session's edge must not throttle the suite itself (it registers many users from
# one address); rate limits are tested on an extra edge with small budgets.
GENEROUS = {"per_minute": 100_000, "per_hour": 1_000_000}
TEST_EDGE_RATE_LIMITS = json.dumps(
    {
        name: GENEROUS
        for name in ("users", "orders", "payments", "inventory", "notifications", "users.Login", "users.RegisterUser")
    }
)
TEST_EXTRA_ORIGIN = "https://shop.example.test"
# The edge and the services refetch the JWKS this often, so key rotation is testable in seconds.
TEST_JWKS_REFRESH_SECONDS = 3.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the finalizer below runs.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    data_dir = Path(tempfile.mkdtemp(prefix="shopmesh-test-"))
    instance = Stack(
        StackSettings.isolated(
            data_dir,
            TEST_SERVICE_ENV,
            edge_rate_limits=TEST_EDGE_RATE_LIMITS,
            edge_cors_origins=TEST_EXTRA_ORIGIN,
            jwks_refresh_seconds=TEST_JWKS_REFRESH_SECONDS,
        )
    )
    try:
        instance.up()
        yield instance
    finally:
        instance.down()
        shutil.rmtree(data_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
