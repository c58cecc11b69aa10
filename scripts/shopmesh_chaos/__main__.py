"""`make chaos`: the long crash-anything ledger test, on a stack of its own.

Starts an isolated instance (temporary directory, free ports) whose edge rate
budgets are raised for the load (it says so), runs CHAOS_RATE checkouts/s
(default 20) for CHAOS_DURATION seconds (default 60) while every component —
the services, Kafka, PostgreSQL, FerretDB, localstripe, Mailpit and Envoy — is
SIGKILLed once and restarted, in an order and at times drawn from CHAOS_SEED
(default: a fresh one, printed), then audits every store. Exit 0 when every
invariant holds, 1 otherwise (the offending ids are printed, and the stack's data
directory with every component's log is kept), 2 on bad settings.
CHAOS_COMPONENTS (comma-separated names, as `make status` shows them) faults only those.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from shopmesh_chaos.faults import faultable
from shopmesh_chaos.run import ChaosPlan, run_chaos, say
from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.stack import Stack

RAISED_BUDGET = {"per_minute": 10_000_000, "per_hour": 100_000_000}
# The services' settings for the run: unpaid orders expire (so abandoned checkouts end final within
# the audit's deadline), and payments' breaker and reconciler, and the mail worker, retry quickly.
SERVICE_ENV = {
    "SHOPMESH_ORDERS_EXPIRY_SECONDS": "20",
    "SHOPMESH_ORDERS_EXPIRY_SCAN_SECONDS": "1",
    "SHOPMESH_STRIPE_TIMEOUT_SECONDS": "3",
    "SHOPMESH_STRIPE_BREAKER_FAILURES": "3",
    "SHOPMESH_STRIPE_BREAKER_OPEN_SECONDS": "2",
    "SHOPMESH_PAYMENTS_LEASE_SECONDS": "15",
    "SHOPMESH_PAYMENTS_RECONCILE_AFTER_SECONDS": "1",
    "SHOPMESH_PAYMENTS_RECONCILE_INTERVAL_SECONDS": "0.5",
    "SHOPMESH_MAIL_POLL_SECONDS": "0.2",
    "SHOPMESH_MAIL_RETRY_INITIAL_SECONDS": "0.2",
    "SHOPMESH_MAIL_RETRY_MAX_SECONDS": "1",
    "SHOPMESH_LOG_LEVEL": "info",
}


def edge_rate_limits(stack_settings: StackSettings) -> str:
    """Every budget class of the declaration raised: the load comes from one address and few accounts."""
    from shopmesh_edge.policy import PLATFORM_API, load_edge_policy

    policy = load_edge_policy(stack_settings.mesh_file)
    names = (*stack_settings.services, *policy.method_budgets, PLATFORM_API)
    return json.dumps(dict.fromkeys(names, RAISED_BUDGET))


def plan_from_env(env: dict[str, str], components: list[str]) -> ChaosPlan:
    read = EnvReader(env)
    seed = read.integer("CHAOS_SEED", random.SystemRandom().randrange(1, 1_000_000), minimum=0, maximum=2**31)
    rate = read.number("CHAOS_RATE", 20.0, minimum=0.1, maximum=200.0)
    duration = read.number("CHAOS_DURATION", 60.0, minimum=10.0, maximum=3600.0)
    chosen = [name.strip() for name in (read.optional("CHAOS_COMPONENTS") or "").split(",") if name.strip()]
    if unknown := sorted(set(chosen) - set(components)):
        raise ConfigError(
            f"CHAOS_COMPONENTS: no component named {', '.join(unknown)} (there are {', '.join(components)})"
        )
    return ChaosPlan(
        seed=seed,
        rate=rate,
        duration=duration,
        components=tuple(chosen or components),
        customers=max(20, int(rate * 5)),
        products=8,
        stock=1_000_000,
    )


def main() -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="shopmesh-chaos-"))
    passed = False
    try:
        base = StackSettings.isolated(data_dir)
        settings = StackSettings.isolated(data_dir, SERVICE_ENV, edge_rate_limits=edge_rate_limits(base))
        stack = Stack(settings)
        try:
            plan = plan_from_env(dict(os.environ), faultable(stack))
        except ConfigError as error:
            print(f"chaos: {error}", file=sys.stderr)
            passed = True  # nothing ran: nothing worth keeping
            return 2
        say(f"own stack in {data_dir}; the edge's rate budgets are raised to {RAISED_BUDGET} for the load")
        try:
            stack.up()
            report = asyncio.run(run_chaos(stack, plan))
        finally:
            stack.down()
        say(f"repeat this run with CHAOS_SEED={plan.seed}")
        passed = report.passed
        return 0 if passed else 1
    finally:
        if passed:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            say(f"the stack's data and logs are kept in {data_dir} (delete it when done)")


if __name__ == "__main__":
    sys.exit(main())
