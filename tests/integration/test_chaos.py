"""The short crash-anything ledger test: checkouts through the edge while a seeded subset of the
stack's components is SIGKILLed and restarted, one at a time; then every store is audited.

The long version, every component at least once at 20 checkouts/s, is `make chaos`
(scripts/shopmesh_chaos). The session's edge already has generous rate budgets
(tests/integration/conftest.py), so the load is not throttled. The seed is printed;
SHOPMESH_CHAOS_SEED repeats a run (or tries another subset).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shopmesh_chaos.faults import faultable, pick
from shopmesh_chaos.run import ChaosPlan, run_chaos
from shopmesh_stack.stack import Stack

DEFAULT_SEED = 24
FAULTED_COMPONENTS = 4


def short_test_pool(stack: Stack) -> list[str]:
    """Every component but two, which `make chaos` faults:

    - Kafka: its restart alone takes 15 to 90 s on a loaded machine (a JVM recovering its logs after
      an unclean shutdown), which would take this test well past its two minutes;
    - FerretDB: its fault is the long run's (it found PyMongo's lock wedging on Python 3.11, fixed in
      shopmesh_platform.mongo_condition_wait and tested in tests/platform/test_mongo_condition_wait.py);
      the short run's seeded choice stays among the components it has been proven with.
    """
    left_to_the_long_run = {stack.kafka.name, stack.ferretdb.name}
    return [name for name in faultable(stack) if name not in left_to_the_long_run]


@pytest.mark.stops_components
@pytest.mark.timeout(420)
async def test_checkouts_survive_crashes_and_the_ledger_stays_exact(stack: Stack, tmp_path: Path) -> None:
    seed = int(os.environ.get("SHOPMESH_CHAOS_SEED", DEFAULT_SEED))
    plan = ChaosPlan(
        seed=seed,
        rate=3.0,
        duration=35.0,
        components=tuple(pick(short_test_pool(stack), FAULTED_COMPONENTS, seed=seed)),
        customers=12,
        products=3,
        stock=100_000,
        retry_budget_seconds=90.0,
        settle_seconds=90.0,
    )
    print(f"chaos: the session's edge budgets are raised for the whole test run (seed {seed})")
    report = await run_chaos(stack, plan)
    if not report.passed:
        # The session's data directory goes at its end: keep the components' logs of a failed run.
        shutil.copytree(stack.settings.log_dir, tmp_path / "logs")
        print(f"chaos: the components' logs are kept in {tmp_path / 'logs'}")
    # Enough happened to mean something: every kind of checkout ran, and every fault recovered.
    assert len(report.audit.evidence.orders) >= plan.rate * plan.duration * 0.5, report.text
    assert len(report.audit.evidence.intents) > 0 and report.audit.evidence.payment_events, report.text
    assert [r.fault.component for r in report.recoveries] == [f.component for f in plan.faults()], report.text
    assert report.passed, report.text
