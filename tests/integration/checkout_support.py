"""Helpers for the checkout's fault tests: crashing and restarting services, payments
through a StripeGate, and the one check every faulty checkout must pass — the order,
its payment, Stripe and the stock ledger all tell the same final story.

The two stories a checkout may end in (never a mix):
- CONFIRMED: the payment SUCCEEDED and nothing refunded, one PaymentIntent, succeeded,
  no Stripe refund; the stock reserved, then committed.
- CANCELLED: any payment of it settled and its money back (REFUNDED, one full Stripe
  refund; or FAILED, or none at all: nothing charged); the stock reserved, then released.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from shopmesh_stack.components import Service
from shopmesh_stack.stack import Stack
from shopmesh_stack.waiting import wait_ready
from tests.integration.inventory_client import ledger_rows
from tests.integration.orders_client import transitions
from tests.integration.payments_support import stripe_client, stripe_refunds
from tests.polling import eventually

# Generous: two cores shared by several stacks; a restarted consumer rejoins its group after
# the dead member's session times out (10 s), an unpaid order expires after 15 s.
SETTLE_TIMEOUT = 90.0
CONFIRMED, CANCELLED = "CONFIRMED", "CANCELLED"


# Crashing and restarting


def kill(stack: Stack, service: str) -> None:
    """SIGKILL the service (no drain, no finalizer) and wait until it is gone."""
    process = stack.services[service].process
    assert process.running(), f"{service} is not running"
    process.stop(sig=signal.SIGKILL)
    assert not process.running()


def start(stack: Stack, component: Service) -> None:
    """Start a service and wait until it answers user calls (health, then its deny-list replayed)."""
    stack.start(component)
    wait_ready(f"{component.name} revocations", component.revocations_loaded, component.process, 60)


def ensure_running(stack: Stack, service: str) -> None:
    """After a test: the session's own instance of the service is back, whatever happened."""
    if not stack.services[service].process.running():
        start(stack, stack.services[service])


def payments_through(stack: Stack, stripe_api_base: str, **env: str) -> Service:
    """The payments service of the session's stack, with its Stripe calls sent to `stripe_api_base`.

    Same ports, log and pid file as the session's payments: it replaces it while it runs.
    """
    base = stack.services["payments"]
    service_env = {**stack.settings.service_env, "SHOPMESH_STRIPE_API_BASE": stripe_api_base, **env}
    return Service(replace(stack.settings, service_env=service_env), stack.installed, "payments", base._stack_env)


def swap_payments(stack: Stack, replacement: Service) -> None:
    """Stop the running payments (SIGTERM, drained) and start `replacement` in its place."""
    stack.stop(stack.services["payments"])
    start(stack, replacement)


# The final story of an order


@dataclass(frozen=True)
class Story:
    order: str  # CONFIRMED or CANCELLED
    payment: str | None  # the payment's final status, None when none was made
    intents: int  # PaymentIntents at Stripe carrying the order id


async def payment_of(stack: Stack, order_id: str) -> asyncpg.Record | None:
    connection = await asyncpg.connect(stack.postgres.dsn("payments"))
    try:
        row: asyncpg.Record | None = await connection.fetchrow(
            "SELECT * FROM payments WHERE order_id = $1", uuid.UUID(order_id)
        )
        return row
    finally:
        await connection.close()


async def attempts_of(stack: Stack, payment_id: uuid.UUID) -> list[str]:
    """The Stripe operations recorded for a payment, in order (a call cut short by a crash leaves none)."""
    connection = await asyncpg.connect(stack.postgres.dsn("payments"))
    try:
        rows = await connection.fetch(
            "SELECT operation FROM payment_attempts WHERE payment_id = $1 ORDER BY id", payment_id
        )
    finally:
        await connection.close()
    return [row["operation"] for row in rows]


def intents_by_order(stack: Stack, order_ids: set[str]) -> dict[str, list[Any]]:
    """Every PaymentIntent at localstripe whose metadata names one of `order_ids` (one listing)."""
    found: dict[str, list[Any]] = {order_id: [] for order_id in order_ids}
    for intent in stripe_client(stack).v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        order_id = (intent.to_dict().get("metadata") or {}).get("order_id")
        if order_id in found:
            found[order_id].append(intent)
    return found


async def final_order_status(stack: Stack, order_id: str) -> str:
    """The order's status once it left PENDING (from its transition log, the source of truth)."""

    async def history() -> list[str]:
        return [t.state["status"] for t in await transitions(stack, order_id)]

    found = await eventually(history, lambda h: h[-1:] != ["PENDING"], timeout=SETTLE_TIMEOUT, interval=0.3)
    # One transition out of PENDING, whatever raced: the creation, then the one that won.
    assert len(found) == 2 and found[0] == "PENDING", (order_id, found)
    return found[1]


async def settled_payment(stack: Stack, order_id: str) -> asyncpg.Record | None:
    """The order's payment once nothing more will happen to it: SUCCEEDED, REFUNDED or FAILED."""

    async def read() -> asyncpg.Record | None:
        return await payment_of(stack, order_id)

    def settled(row: asyncpg.Record | None) -> bool:
        return row is None or row["status"] in ("SUCCEEDED", "REFUNDED", "FAILED")

    return await eventually(read, settled, timeout=SETTLE_TIMEOUT, interval=0.3)


async def story_of(stack: Stack, order_id: str, product_id: str, quantity: int, amount_minor: int) -> Story:
    """Wait for the order's checkout to come to rest and check that every part tells the same story."""
    status = await final_order_status(stack, order_id)
    assert status in (CONFIRMED, CANCELLED), (order_id, status)
    reserve = (product_id, "reserve", 0, quantity)
    settle = (
        (product_id, "commit", -quantity, -quantity) if status == CONFIRMED else (product_id, "release", 0, -quantity)
    )
    await eventually(
        lambda: ledger_rows(stack, order_id), lambda rows: rows == [reserve, settle], timeout=SETTLE_TIMEOUT
    )
    payment = await settled_payment(stack, order_id)
    if status == CANCELLED and payment is not None and payment["status"] == "SUCCEEDED":
        # Paid for an order cancelled first: payments refunds it once it learns of the cancellation.
        async def refunded() -> asyncpg.Record | None:
            return await payment_of(stack, order_id)

        payment = await eventually(
            refunded, lambda row: row is not None and row["status"] == "REFUNDED", timeout=SETTLE_TIMEOUT
        )
    intents = (await asyncio.to_thread(intents_by_order, stack, {order_id}))[order_id]
    assert len(intents) <= 1, (order_id, [i.id for i in intents])  # never two charges for one order
    if payment is None:
        assert status == CANCELLED and intents == [], (order_id, status, intents)
        return Story(status, None, 0)
    assert payment["amount_minor"] == amount_minor
    if payment["status"] == "FAILED":
        assert status == CANCELLED, (order_id, status)
        return Story(status, "FAILED", len(intents))
    [intent] = intents
    assert (intent.id, intent.status) == (payment["stripe_payment_intent_id"], "succeeded"), (order_id, intent)
    refunds = [(r.amount, r.status) for r in await asyncio.to_thread(stripe_refunds, stack, intent.id)]
    if status == CONFIRMED:
        assert (payment["status"], payment["amount_refunded_minor"], refunds) == ("SUCCEEDED", 0, []), order_id
    else:
        assert (payment["status"], payment["amount_refunded_minor"]) == ("REFUNDED", amount_minor), order_id
        assert refunds == [(amount_minor, "succeeded")], (order_id, refunds)
    return Story(status, str(payment["status"]), 1)
