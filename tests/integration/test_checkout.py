"""The checkout saga on the real stack (REST through the edge, localstripe, Kafka):
a payment confirms the order and inventory commits its stock; a declined card
cancels it and the stock comes back exactly; cancelling a paid order refunds it and
returns the stock; a payment that succeeds after its order was cancelled is refunded;
a duplicated PaymentSucceeded confirms and commits once; admins move a confirmed
order on, and illegal moves are refused."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shopmesh_inventory.ledger_check import check
from shopmesh_platform.events.envelope import encode
from shopmesh_stack.stack import Stack
from tests.integration.inventory_client import admin_account, ledger_rows
from tests.integration.orders_client import cancel_order, get_order, place, sample, set_status, transitions
from tests.integration.payments_support import (
    confirm_intent,
    create_intent,
    payment_row,
    payments_db,
    seed_payment,
    stripe_refunds,
)
from tests.integration.users_client import Account, call, register
from tests.polling import eventually

PRODUCT = "prod-123"
# Generous: two cores shared by several stacks; each step is one Kafka hop and one insert.
SAGA_TIMEOUT = 60.0
PENDING, CONFIRMED, CANCELLED = "ORDER_STATUS_PENDING", "ORDER_STATUS_CONFIRMED", "ORDER_STATUS_CANCELLED"
SHIPPED, DELIVERED = "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"
RESERVE, COMMIT = (PRODUCT, "reserve", 0, 2), (PRODUCT, "commit", -2, -2)
RELEASE, RETURN = (PRODUCT, "release", 0, -2), (PRODUCT, "return", 2, 0)
ORDERS_DUPLICATES = {"group": "orders.payment-events", "topic": "payment-events", "outcome": "duplicate"}


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return admin_account(stack)


def place_two_shirts(stack: Stack, account: Account) -> dict[str, Any]:
    """The original's order: prod-123 x 2 at 29.99 USD (59.98)."""
    order = place(stack, account, [(PRODUCT, 2, 29.99)])
    assert (order["status"], order["totalAmount"]) == (PENDING, 59.98), order
    return order


def pay(stack: Stack, account: Account, order: dict[str, Any], method: str = "pm_card_visa") -> dict[str, Any]:
    body = {"orderId": order["id"], "amount": 59.98, "currency": "USD", "paymentMethodId": method}
    reply = call(stack, "POST", "/api/v1/payments", account, body)
    assert reply.status == 200, reply.body
    payment: dict[str, Any] = reply.json()
    return payment


async def order_reaches(stack: Stack, account: Account, order_id: str, status: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        reply = await asyncio.to_thread(get_order, stack, account, order_id)
        assert reply.status == 200, reply.body
        found: dict[str, Any] = reply.json()
        return found

    return await eventually(read, lambda order: order["status"] == status, timeout=SAGA_TIMEOUT, interval=0.2)


async def ledger_reaches(stack: Stack, order_id: str, expected: list[tuple[str, str, int, int]]) -> None:
    await eventually(lambda: ledger_rows(stack, order_id), lambda rows: rows == expected, timeout=SAGA_TIMEOUT)


async def ledger_is_consistent(stack: Stack) -> None:
    report = await check(stack.postgres.dsn("inventory"))
    assert report.consistent, report.mismatches


async def payment_status(stack: Stack, payment_id: str) -> str:
    connection = await payments_db(stack)
    try:
        return str((await payment_row(connection, payment_id))["status"])
    finally:
        await connection.close()


async def intent_of(stack: Stack, payment_id: str) -> str:
    connection = await payments_db(stack)
    try:
        return str((await payment_row(connection, payment_id))["stripe_payment_intent_id"])
    finally:
        await connection.close()


async def paid_and_confirmed(stack: Stack, account: Account) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order paid with a Visa card, CONFIRMED, its stock committed."""
    order = await asyncio.to_thread(place_two_shirts, stack, account)
    payment = await asyncio.to_thread(pay, stack, account, order)
    assert (payment["status"], payment["amount"]) == ("PAYMENT_STATUS_SUCCEEDED", 59.98), payment
    confirmed = await order_reaches(stack, account, order["id"], CONFIRMED)
    await ledger_reaches(stack, order["id"], [RESERVE, COMMIT])
    return confirmed, payment


async def test_a_visa_payment_confirms_the_order_and_commits_its_stock(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    order, payment = await paid_and_confirmed(stack, account)
    assert order["cancellationReason"] == ""
    # One transition per step: created, then confirmed by the payment (not twice).
    assert [t.state["status"] for t in await transitions(stack, order["id"])] == ["PENDING", "CONFIRMED"]
    await ledger_is_consistent(stack)
    assert await payment_status(stack, payment["paymentId"]) == "SUCCEEDED"


async def test_a_declined_card_cancels_the_order_and_restores_the_stock_exactly(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    order = await asyncio.to_thread(place_two_shirts, stack, account)
    payment = await asyncio.to_thread(pay, stack, account, order, "pm_card_chargeCustomerFail")
    assert payment["status"] == "PAYMENT_STATUS_FAILED", payment
    cancelled = await order_reaches(stack, account, order["id"], CANCELLED)
    assert cancelled["cancellationReason"] == "payment_failed"
    await ledger_reaches(stack, order["id"], [RESERVE, RELEASE])
    await ledger_is_consistent(stack)
    connection = await payments_db(stack)
    try:
        types = await connection.fetch(
            "SELECT event_type FROM outbox WHERE aggregate_id = $1 AND published_at IS NOT NULL", order["id"]
        )
    finally:
        await connection.close()
    assert [row["event_type"] for row in types] == ["shopmesh.payment.v1.PaymentFailed"]


async def test_cancelling_a_paid_order_refunds_it_and_returns_the_stock(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    order, payment = await paid_and_confirmed(stack, account)
    reply = await asyncio.to_thread(cancel_order, stack, account, order["id"])
    assert reply.status == 200, reply.body
    assert (reply.json()["status"], reply.json()["cancellationReason"]) == (CANCELLED, "cancelled_by_owner")
    intent_id = await intent_of(stack, payment["paymentId"])

    async def refunds() -> list[Any]:
        return await asyncio.to_thread(stripe_refunds, stack, intent_id)

    found = await eventually(refunds, lambda found: len(found) >= 1, timeout=SAGA_TIMEOUT, interval=0.5)
    assert [(r.amount, r.status) for r in found] == [(5998, "succeeded")]
    await eventually(lambda: payment_status(stack, payment["paymentId"]), lambda s: s == "REFUNDED", timeout=30)
    await ledger_reaches(stack, order["id"], [RESERVE, COMMIT, RETURN])
    await ledger_is_consistent(stack)
    assert (await order_reaches(stack, account, order["id"], CANCELLED))["status"] == CANCELLED


async def test_a_payment_that_succeeds_after_its_order_was_cancelled_is_refunded(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    order = await asyncio.to_thread(place_two_shirts, stack, account)
    assert (await asyncio.to_thread(cancel_order, stack, account, order["id"])).status == 200
    connection = await payments_db(stack)
    try:

        async def known_cancelled() -> bool:
            found = await connection.fetchval(
                "SELECT count(*) FROM cancelled_orders WHERE order_id = $1", uuid.UUID(order["id"])
            )
            return bool(found)

        # Payments learned of the cancellation first; then a payment of the order (the customer
        # was paying while it expired) succeeds at Stripe and reaches payments later.
        await eventually(known_cancelled, bool, timeout=SAGA_TIMEOUT, interval=0.2)
        intent_id = await asyncio.to_thread(create_intent, stack, order["id"], account.id, 5998)
        assert await asyncio.to_thread(confirm_intent, stack, intent_id) == "succeeded"
        payment_id, _ = await seed_payment(
            connection, user_id=account.id, amount_minor=5998, intent_id=intent_id, order_id=order["id"]
        )
    finally:
        await connection.close()

    async def refunds() -> list[Any]:
        return await asyncio.to_thread(stripe_refunds, stack, intent_id)

    found = await eventually(refunds, lambda found: len(found) >= 1, timeout=SAGA_TIMEOUT, interval=0.5)
    await eventually(lambda: payment_status(stack, payment_id), lambda s: s == "REFUNDED", timeout=30)
    assert (
        [(r.amount, r.status) for r in await refunds()]
        == [(5998, "succeeded")]
        == [(r.amount, r.status) for r in found]
    )
    # The order stays CANCELLED (its PaymentSucceeded found it no longer PENDING); the stock is back.
    assert [t.state["status"] for t in await transitions(stack, order["id"])] == ["PENDING", "CANCELLED"]
    await ledger_reaches(stack, order["id"], [RESERVE, RELEASE])


async def test_a_duplicated_payment_succeeded_confirms_and_commits_once(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    order, _ = await paid_and_confirmed(stack, account)
    before = await asyncio.to_thread(sample, stack, "orders", "consumer_events_total", **ORDERS_DUPLICATES)
    connection = await payments_db(stack)
    try:
        row = await connection.fetchrow(
            """SELECT event_id, topic, aggregate_id, event_type, payload, traceparent FROM outbox
               WHERE aggregate_id = $1 AND event_type = 'shopmesh.payment.v1.PaymentSucceeded'""",
            order["id"],
        )
    finally:
        await connection.close()
    assert row is not None
    # The very event payments published, on the topic twice more (a relay crash or a redrive).
    envelope = encode(
        row["topic"],
        row["aggregate_id"],
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        payload=bytes(row["payload"]),
        traceparent=row["traceparent"],
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                envelope.topic, envelope.value, key=envelope.key, headers=list(envelope.headers)
            )
    finally:
        await producer.stop()

    async def duplicates() -> float:
        return await asyncio.to_thread(sample, stack, "orders", "consumer_events_total", **ORDERS_DUPLICATES)

    await eventually(duplicates, lambda count: count >= before + 2, timeout=SAGA_TIMEOUT, interval=0.5)
    assert [t.state["status"] for t in await transitions(stack, order["id"])] == ["PENDING", "CONFIRMED"]
    assert await ledger_rows(stack, order["id"]) == [RESERVE, COMMIT]
    await ledger_is_consistent(stack)


async def test_admins_ship_and_deliver_a_confirmed_order_and_illegal_moves_are_refused(
    stack: Stack, admin: Account
) -> None:
    account = await asyncio.to_thread(register, stack)
    order, _ = await paid_and_confirmed(stack, account)
    order_id = order["id"]

    def move(status: str, by: Account = admin) -> Any:
        return set_status(stack, by, order_id, status)

    for illegal in (PENDING, CONFIRMED, DELIVERED):
        refused = await asyncio.to_thread(move, illegal)
        assert refused.status == 400 and refused.json()["code"] == 9, (illegal, refused.body)  # FAILED_PRECONDITION
    assert (await asyncio.to_thread(move, SHIPPED, account)).status == 403  # the owner is no admin
    shipped = await asyncio.to_thread(move, SHIPPED)
    assert shipped.status == 200 and shipped.json()["status"] == SHIPPED, shipped.body
    # Shipped: neither the owner nor an admin may cancel any more; CONFIRMED is behind it.
    assert (await asyncio.to_thread(cancel_order, stack, account, order_id)).status == 400
    for illegal in (CANCELLED, CONFIRMED, PENDING):
        assert (await asyncio.to_thread(move, illegal)).status == 400, illegal
    delivered = await asyncio.to_thread(move, DELIVERED)
    assert delivered.status == 200 and delivered.json()["status"] == DELIVERED, delivered.body
    for illegal in (CANCELLED, SHIPPED, CONFIRMED):
        assert (await asyncio.to_thread(move, illegal)).status == 400, illegal
    history = [t.state["status"] for t in await transitions(stack, order_id)]
    assert history == ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]
    # The stock stayed committed: shipping is not a stock movement.
    assert await ledger_rows(stack, order_id) == [RESERVE, COMMIT]
