"""`make demo` against the test instance: every step happens and is printed.

The demo runs as `make demo` runs it (`python -m shopmesh_demo`), its endpoints
chosen the way `make up`'s are (`SHOPMESH_PORT_<NAME>`), through an extra edge
with the budgets mesh/mesh.yaml declares (the session's edge has generous ones),
so it also shows that the demo fits a `make up` stack's default budgets. The
demo's trace id must reach the services and cross Kafka: payments' events of the
demo's orders (also the refund, caused by the orders' OrderCancelled event) carry it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest

from shopmesh_demo.__main__ import TRACE_STEP
from shopmesh_demo.story import STEPS
from shopmesh_stack.stack import Stack
from tests.integration.extra_edge import running_edge
from tests.integration.payments_support import payments_db

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Each asynchronous outcome (a Kafka hop or two) may take this long on a loaded machine.
WAIT_SECONDS = 90
# What the printed story must contain beyond the step titles: the calls and their outcomes.
EXPECTED_LINES = [
    r"POST /api/v1/users/register -> 200 .* is user " + UUID,
    r"GET /api/v1/products\?category=stationery&pageSize=5 -> 200 .*available",
    r"POST /api/v1/orders -> 200 .*order " + UUID + " PENDING",
    r"POST /api/v1/payments -> 200 .*SUCCEEDED",
    r"GET /api/v1/orders/" + UUID + r" -> 200 .*CONFIRMED after",
    r"GET /api/v1/notifications\?pageSize=20 -> 200 .*confirmed",
    r"GET /api/v1/search\?query=to:demo-[0-9a-f]{8}@example.com -> 200 .*confirmed",
    r"GET /api/v1/products/prod-\d+ -> 200 +stock before: (\d+) available",
    r"POST /api/v1/payments -> 200 .*FAILED",
    r"GET /api/v1/orders/" + UUID + r" -> 200 +CANCELLED \(payment_failed\)",
    r"GET /api/v1/products/prod-\d+ -> 200 +stock after: (\d+) available, restored",
    r"POST /api/v1/orders/" + UUID + r":cancel -> 200 +CANCELLED \(cancelled_by_owner\)",
    r"GET /api/v1/payments/" + UUID + r" -> 200 +REFUNDED, \d+\.\d\d USD back",
    r"GET /api/v1/products/prod-\d+ -> 200 +\d+ available: the paid units are back in stock",
    r"trace id [0-9a-f]{32}",
    r"demo complete: every step happened",
]


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopmesh_demo", "--wait", str(WAIT_SECONDS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS * 4,
        check=False,
    )


async def payment_event_traceparents(stack: Stack, order_ids: list[str]) -> list[tuple[str, str]]:
    """(event type, traceparent) of payments' outbox rows about the orders."""
    connection = await payments_db(stack)
    try:
        rows = await connection.fetch(
            "SELECT event_type, traceparent FROM outbox WHERE aggregate_id = ANY($1::text[]) ORDER BY id", order_ids
        )
    finally:
        await connection.close()
    return [(row["event_type"].rsplit(".", 1)[-1], row["traceparent"] or "") for row in rows]


@pytest.mark.timeout(WAIT_SECONDS * 5)
async def test_the_demo_tells_the_whole_story_within_the_declared_edge_budgets(stack: Stack) -> None:
    with running_edge(stack, "envoy-demo", rate_limits="") as edge:
        env = {**os.environ, **stack.settings.ports.variables(), "SHOPMESH_PORT_EDGE": str(edge.port)}
        demo = await asyncio.to_thread(run_demo, env)
    story = demo.stdout
    assert demo.returncode == 0, story + demo.stderr
    assert f"REST through the edge at {edge.url}" in story
    for number, title in enumerate((*STEPS, TRACE_STEP), start=1):
        assert f"\n[{number}] {title}\n" in story, (title, story)
    for pattern in EXPECTED_LINES:
        assert re.search(pattern, story), (pattern, story)
    before = re.search(EXPECTED_LINES[7], story)
    after = re.search(EXPECTED_LINES[10], story)
    assert before and after and before.group(1) == after.group(1), story
    # One trace id, announced at the start and printed at the end.
    announced = re.search(r"traceparent 00-([0-9a-f]{32})-", story)
    assert announced and f"trace id {announced.group(1)}" in story, story
    trace_id = announced.group(1)
    # The trace reached the services: the payments, and the refund the owner's cancel caused over Kafka.
    order_ids = list(dict.fromkeys(re.findall(r"order (" + UUID + ") PENDING", story)))
    assert len(order_ids) == 2, story
    events = await payment_event_traceparents(stack, order_ids)
    assert sorted(kind for kind, _ in events) == ["PaymentFailed", "PaymentRefunded", "PaymentSucceeded"], events
    assert all(traceparent.split("-")[1] == trace_id for _, traceparent in events), (trace_id, events)
    # The story ends with its span tree, read back from Jaeger: every service took part in the one trace.
    header = re.search(rf"trace {trace_id}: \d+ spans, services: (.*)", story)
    assert header, story
    assert {"shopmesh-users", "shopmesh-orders", "shopmesh-payments", "shopmesh-inventory"} <= set(
        header.group(1).split(", ")
    ), header.group(0)
