"""One chaos run on a running stack: set up, load with faults, recover, audit, report.

The short test (tests/integration/test_chaos.py) and `make chaos` both call
`run_chaos` with a plan; it prints the schedule first, and at the end the request
table, the recoveries, the ledger table and every invariant with its offending ids.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from shopmesh_chaos.audit import AuditResult, Finding, audit, ledger_table
from shopmesh_chaos.client import EdgeClient, RequestLog
from shopmesh_chaos.faults import Fault, FaultInjector, Recovery, schedule
from shopmesh_chaos.load import CheckoutLoad
from shopmesh_chaos.stores import StoreReader
from shopmesh_stack.stack import Stack


@dataclass(frozen=True)
class ChaosPlan:
    seed: int
    # Checkouts started per second, for at least `duration` seconds (longer if the faults run late).
    rate: float
    duration: float
    components: tuple[str, ...]
    customers: int
    products: int
    stock: int
    # How long a client keeps retrying one request.
    retry_budget_seconds: float = 120.0
    # How long after the last recovery the auditor waits for every invariant to hold.
    settle_seconds: float = 120.0

    def faults(self) -> list[Fault]:
        # Leave the last fifth of the load without new faults, so the last one recovers under load.
        return schedule(self.components, seed=self.seed, within_seconds=self.duration * 0.8)


@dataclass(frozen=True)
class ChaosReport:
    plan: ChaosPlan
    requests: RequestLog
    audit: AuditResult
    client_findings: list[Finding]
    recoveries: list[Recovery]
    text: str

    @property
    def passed(self) -> bool:
        return self.audit.passed and all(f.holds for f in self.client_findings)


def say(message: str) -> None:
    print(f"chaos: {message}", flush=True)


async def run_chaos(stack: Stack, plan: ChaosPlan) -> ChaosReport:
    faults = plan.faults()
    say(f"seed {plan.seed}: {plan.rate:g} checkouts/s for {plan.duration:g}s, faults (one at a time):")
    for fault in faults:
        print(f"  {fault.describe()}", flush=True)
    log = RequestLog()
    client = EdgeClient(stack.settings.edge_url, log, retry_budget_seconds=plan.retry_budget_seconds)
    run_id = uuid.uuid4().hex[:8]
    load = CheckoutLoad(client, seed=plan.seed, users_dsn=stack.postgres.dsn(_users_database(stack)), run_id=run_id)
    try:
        await load.set_up(customers=plan.customers, products=plan.products, stock=plan.stock)
        say(f"run {run_id}: {len(load.customers)} customers, {len(load.catalog.initial_stock)} products; load starts")
        injector = FaultInjector(stack, faults)
        stop = asyncio.Event()
        started = time.monotonic()
        loading = asyncio.create_task(load.run(rate=plan.rate, stop=stop))
        try:
            await injector.run(started)
            # The load's length (not a synchronisation): at least `duration`, and past the last recovery.
            await asyncio.sleep(max(0.0, started + plan.duration - time.monotonic()))
        finally:
            stop.set()
            await loading
        load_done = time.monotonic()
        say(f"load done at t+{load_done - started:.1f}s: {len(load.checkouts)} checkouts")
    finally:
        await client.close()
    # The settling clock starts when the last fault has recovered and the client has stopped
    # (its last requests may still be retrying well after the last recovery).
    last_recovery = max(started + (injector.last_recovery or 0.0), load_done)
    reader = StoreReader(
        stack,
        {c.id for c in load.customers},
        {c.email for c in load.customers},
        set(load.catalog.initial_stock),
    )
    result = await audit(
        reader, load.catalog, load.checkouts, last_recovery=last_recovery, settle_seconds=plan.settle_seconds
    )
    client_findings = [
        Finding(
            "no call lost: every request got a definite answer within its retry budget",
            tuple(f"{op}: {outcome} x{n}" for op, outcome, n in log.gave_up()),
        ),
        Finding("no INTERNAL (HTTP 500) answer", tuple(log.internal_errors)),
    ]
    text = "\n".join(
        [
            "requests (each retried with the same request id while it failed):",
            log.table(),
            "",
            "faults:",
            *(f"  {r.describe()}" for r in injector.recoveries),
            "",
            "ledger:",
            ledger_table(result.evidence, load.catalog),
            "",
            "invariants:",
            *(f.describe() for f in [*client_findings, *result.findings]),
        ]
    )
    report = ChaosReport(plan, log, result, client_findings, injector.recoveries, text)
    print(text, flush=True)
    say("PASSED" if report.passed else "FAILED")
    return report


def _users_database(stack: Stack) -> str:
    """The token issuer's database (where accounts are promoted to admin)."""
    storage = stack.settings.mesh.service("users").storage
    assert storage is not None
    return storage.database
