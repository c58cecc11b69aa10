"""One real stack per test session: PostgreSQL, Kafka, FerretDB, localstripe, the
services of mesh/mesh.yaml and Envoy, in a temporary data directory on free ports.

Started once, stopped at the end of the session, also on failure, Ctrl-C or
SIGTERM, so nothing of ours outlives the run; if the run is SIGKILLed, the
kernel kills the components (they die with their parent). A component that
cannot start fails the session: nothing is skipped.

Starting and stopping have deadlines of their own: pytest-timeout's per-test
timeout covers only test functions (`timeout_func_only`), never this fixture.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from shopmesh_edge.policy import PLATFORM_API, load_edge_policy
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.stack import Stack
from tests.declared import SERVICES

# Per-instance service settings: tests vary these, never a developer's stack.
TEST_SERVICE_ENV = {
    "SHOPMESH_HEALTH_PROBE_INTERVAL_SECONDS": "0.2",
    # Long enough for the drain test's slow calls on a loaded machine; a stop with
    # no call in flight does not wait for it.
    "SHOPMESH_DRAIN_GRACE_SECONDS": "15",
    "SHOPMESH_LOG_LEVEL": "info",
    # A reservation whose order is never seen is released after this long (test_inventory's orphan
    # test). Real orders' OrderCreated must reach inventory within it, on a loaded machine too;
    # inventory refuses a grace that does not exceed CreateOrder's timeout (10 s).
    "SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS": "12",
    "SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS": "0.5",
    # Unpaid orders expire after this long (test_orders' expiry tests); longer than the orphan
    # grace, so an expired order's release (reason reservation_expired) shows it was not reaped.
    "SHOPMESH_ORDERS_EXPIRY_SECONDS": "15",
    "SHOPMESH_ORDERS_EXPIRY_SCAN_SECONDS": "0.5",
    # Payments: a breaker that opens and probes within seconds, a quick reconciler.
    "SHOPMESH_STRIPE_TIMEOUT_SECONDS": "3",
    "SHOPMESH_STRIPE_BREAKER_FAILURES": "3",
    "SHOPMESH_STRIPE_BREAKER_OPEN_SECONDS": "2",
    "SHOPMESH_PAYMENTS_LEASE_SECONDS": "15",
    "SHOPMESH_PAYMENTS_RECONCILE_AFTER_SECONDS": "1",
    "SHOPMESH_PAYMENTS_RECONCILE_INTERVAL_SECONDS": "0.5",
    # Mails wait at most a second between attempts while Mailpit is down (test_notifications).
    "SHOPMESH_MAIL_POLL_SECONDS": "0.2",
    "SHOPMESH_MAIL_RETRY_INITIAL_SECONDS": "0.2",
    "SHOPMESH_MAIL_RETRY_MAX_SECONDS": "1",
}


# The session's edge must not throttle the suite itself (it registers many users from
# one address); rate limits are tested on an extra edge with small budgets.
GENEROUS = {"per_minute": 100_000, "per_hour": 1_000_000}
# Every budget class the declaration has: each service, each method with its own budget, platform_api.
TEST_EDGE_RATE_LIMITS = json.dumps(
    dict.fromkeys((*SERVICES, *load_edge_policy().method_budgets, PLATFORM_API), GENEROUS)
)
TEST_EXTRA_ORIGIN = "https://shop.example.test"
# The edge and the services refetch the JWKS this often, so key rotation is testable in seconds.
TEST_JWKS_REFRESH_SECONDS = 3.0

# Bounds on the whole start (components already installed by `make install`) and stop.
STACK_UP_DEADLINE_SECONDS = 600
STACK_DOWN_DEADLINE_SECONDS = 180


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs longer than `seconds`.

    SIGALRM is free here: pytest-timeout arms it only around test functions.
    """

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"{what}: not done within {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the finalizer below runs.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    data_dir = Path(tempfile.mkdtemp(prefix="shopmesh-test-"))
    settings = StackSettings.isolated(
        data_dir,
        TEST_SERVICE_ENV,
        edge_rate_limits=TEST_EDGE_RATE_LIMITS,
        edge_cors_origins=TEST_EXTRA_ORIGIN,
        jwks_refresh_seconds=TEST_JWKS_REFRESH_SECONDS,
    )
    instance = Stack(settings)
    try:
        with deadline(STACK_UP_DEADLINE_SECONDS, "starting the test stack"):
            instance.up()
        yield instance
    finally:
        try:
            with deadline(STACK_DOWN_DEADLINE_SECONDS, "stopping the test stack"):
                instance.down()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
            signal.signal(signal.SIGTERM, previous)
