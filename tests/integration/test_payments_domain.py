"""CreatePayment's rules on the real payments database and localstripe, with the orders
service replaced by a fake OrderLookup (the one port whose service is not built yet).

The same flows over REST through the edge, against the real orders service, are in
pending_test_checkout_payments.py, to be enabled when orders lands.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shopmesh_payments import store
from shopmesh_payments.config import ReconcileConfig, StripeConfig
from shopmesh_payments.domain import NewPayment, Payments
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.records import OrderSnapshot, PaymentRecord, PaymentStatus
from shopmesh_payments.stripe_gateway import StripeGateway
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from shopmesh_stack.components import LOCALSTRIPE_WEBHOOK_SECRET
from shopmesh_stack.stack import Stack
from tests.integration.payments_support import (
    create_intent_as_payments,
    intents_for_order,
    outbox_types,
    stripe_refunds,
)
from tests.polling import eventually


class FakeOrders:
    """OrderLookup over a dict of orders."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderSnapshot] = {}
        self.lookups = 0

    def add(self, user_id: str, total_minor: int = 5998, status: str = "PENDING", currency: str = "USD") -> str:
        order_id = str(uuid.uuid4())
        self.orders[order_id] = OrderSnapshot(order_id, user_id, status, total_minor, currency)
        return order_id

    async def get(self, order_id: str) -> OrderSnapshot | None:
        self.lookups += 1
        return self.orders.get(order_id)


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(stack.postgres.dsn("payments"), min_size=1, max_size=6)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def orders() -> FakeOrders:
    return FakeOrders()


def payments_through(
    stack: Stack, pool: asyncpg.Pool, orders: FakeOrders, api_base: str, *, timeout_seconds: float = 10
) -> Payments:
    """Payments whose Stripe calls go to `api_base` (five failures open the breaker)."""
    metrics = PaymentMetrics()
    gateway = StripeGateway(
        StripeConfig(
            api_base=api_base,
            api_key=stack.localstripe.api_key,
            webhook_secret=LOCALSTRIPE_WEBHOOK_SECRET,
            timeout_seconds=timeout_seconds,
            breaker_failures=5,
            breaker_open_seconds=5,
        ),
        metrics,
    )
    return Payments(pool, orders, gateway, ReconcileConfig(30, 1, 1), metrics)


@pytest.fixture
def payments(stack: Stack, pool: asyncpg.Pool, orders: FakeOrders) -> Payments:
    return payments_through(stack, pool, orders, stack.localstripe.api_base)


def customer() -> Caller:
    return Caller(user_id=str(uuid.uuid4()), role="customer")


def new(order_id: str, amount_minor: int = 5998, method: str = "pm_card_visa", **extra: str) -> NewPayment:
    return NewPayment(order_id=order_id, amount_minor=amount_minor, currency="USD", payment_method=method, **extra)


async def test_a_visa_payment_succeeds_once_with_its_order_in_stripe_metadata(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    payment = await payments.create(caller, new(order_id))
    assert (payment.status, payment.amount_minor, payment.order_id) == (PaymentStatus.SUCCEEDED, 5998, order_id)
    [intent] = intents_for_order(stack, order_id)
    assert intent.id == payment.stripe_payment_intent_id and intent.status == "succeeded"
    assert intent.to_dict()["metadata"]["user_id"] == caller.user_id
    async with pool.acquire() as connection:
        assert await outbox_types(connection, order_id) == ["PaymentSucceeded"]


async def test_a_declined_card_is_a_failed_payment_with_stripes_code(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    payment = await payments.create(caller, new(order_id, method="pm_card_chargeCustomerFail"))
    assert (payment.status, payment.failure_reason) == (PaymentStatus.FAILED, "card_declined")
    async with pool.acquire() as connection:
        assert await outbox_types(connection, order_id) == ["PaymentFailed"]
    # Asking again for the same order: one PaymentIntent, ever.
    with pytest.raises(AlreadyExists):
        await payments.create(caller, new(order_id))
    assert len(intents_for_order(stack, order_id)) == 1


async def test_payments_that_do_not_match_their_order_are_refused_before_stripe(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    caller, stranger = customer(), customer()
    order_id = orders.add(caller.user_id or "")
    with pytest.raises(InvalidArgument) as wrong_amount:
        await payments.create(caller, new(order_id, amount_minor=5999))
    assert [v.field for v in wrong_amount.value.field_violations] == ["amount"]
    with pytest.raises(InvalidArgument) as wrong_currency:
        await payments.create(caller, NewPayment(order_id, 5998, "eur", "pm_card_visa"))
    assert [v.field for v in wrong_currency.value.field_violations] == ["currency"]
    with pytest.raises(NotFound):
        await payments.create(stranger, new(order_id))
    with pytest.raises(NotFound):
        await payments.create(caller, new(str(uuid.uuid4())))
    confirmed = orders.add(caller.user_id or "", status="CONFIRMED")
    with pytest.raises(FailedPrecondition) as not_pending:
        await payments.create(caller, new(confirmed))
    assert not_pending.value.reason == "ORDER_NOT_PENDING"
    async with pool.acquire() as connection:
        for order in (order_id, confirmed):
            assert await store.find_by_order(connection, order) is None
    assert intents_for_order(stack, order_id) == [] and intents_for_order(stack, confirmed) == []


async def test_concurrent_attempts_for_one_order_make_one_payment_intent(
    stack: Stack, payments: Payments, orders: FakeOrders
) -> None:
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    results = await asyncio.gather(
        *(payments.create(caller, new(order_id, request_id=str(uuid.uuid4()))) for _ in range(4)),
        return_exceptions=True,
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(made) == 1 and all(isinstance(r, AlreadyExists) for r in refused), results
    assert len(intents_for_order(stack, order_id)) == 1


async def test_a_retry_with_the_same_request_id_returns_the_first_payment(
    stack: Stack, payments: Payments, orders: FakeOrders
) -> None:
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    request_id = str(uuid.uuid4())
    concurrent = await asyncio.gather(
        *(payments.create(caller, new(order_id, request_id=request_id)) for _ in range(3))
    )
    assert len({p.id for p in concurrent}) == 1
    later = await payments.create(caller, new(order_id, request_id=request_id))
    assert later.id == concurrent[0].id and later.status is PaymentStatus.SUCCEEDED
    assert len(intents_for_order(stack, order_id)) == 1


async def test_refund_for_a_cancelled_order_refunds_once(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    paid = await payments.create(caller, new(order_id))
    first, second = await asyncio.gather(
        payments.refund_for_cancelled_order(order_id), payments.refund_for_cancelled_order(order_id)
    )
    again = await payments.refund_for_cancelled_order(order_id)
    assert first is not None and first.status in (PaymentStatus.REFUNDED, PaymentStatus.SUCCEEDED)
    assert again is None  # fully refunded: nothing left to do
    assert paid.stripe_payment_intent_id is not None
    assert [r.amount for r in stripe_refunds(stack, paid.stripe_payment_intent_id)] == [5998]
    async with pool.acquire() as connection:
        assert await outbox_types(connection, order_id) == ["PaymentSucceeded", "PaymentRefunded"]
        assert await payments.refund_for_cancelled_order(str(uuid.uuid4())) is None
    assert second is not None


async def _operations(pool: asyncpg.Pool, payment_id: str) -> list[tuple[str, str]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT operation, outcome FROM payment_attempts WHERE payment_id = $1 ORDER BY id", uuid.UUID(payment_id)
        )
    return [(row["operation"], row["outcome"]) for row in rows]


async def _reconciled(payments: Payments, pool: asyncpg.Pool, payment_id: str) -> PaymentStatus:
    async def status() -> PaymentStatus:
        await payments.reconcile_once()
        async with pool.acquire() as connection:
            found = await store.find_by_id(connection, payment_id)
        assert found is not None
        return found.status

    return await eventually(status, lambda current: current.settled, timeout=30, interval=0.2)


async def _pending_payment(payments: Payments, pool: asyncpg.Pool, caller: Caller, order_id: str) -> PaymentRecord:
    with pytest.raises(Unavailable):
        await payments.create(caller, new(order_id))
    async with pool.acquire() as connection:
        pending = await store.find_by_order(connection, order_id)
    assert pending is not None and pending.status is PaymentStatus.PENDING
    return pending


async def test_a_create_that_never_left_is_finished_without_searching_stripe(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}"
    through_nothing = payments_through(stack, pool, orders, unreachable, timeout_seconds=0.5)
    pending = await _pending_payment(through_nothing, pool, caller, order_id)
    assert pending.intent_requested is False
    payment_id = pending.id

    assert await _reconciled(payments, pool, payment_id) is PaymentStatus.SUCCEEDED
    operations = await _operations(pool, payment_id)
    assert operations[0] == ("create", "unavailable")
    assert ("find", "ok") not in operations and ("create", "ok") in operations, operations
    assert [intent.status for intent in intents_for_order(stack, order_id)] == ["succeeded"]


async def _silently_pending(stack: Stack, pool: asyncpg.Pool, orders: FakeOrders) -> tuple[PaymentRecord, Caller]:
    """A payment whose create went to a server that took the connection and never answered (it may have
    reached Stripe)."""
    caller = customer()
    order_id = orders.add(caller.user_id or "")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        silence = f"http://127.0.0.1:{silent.getsockname()[1]}"
        through_silence = payments_through(stack, pool, orders, silence, timeout_seconds=0.5)
        pending = await _pending_payment(through_silence, pool, caller, order_id)
    finally:
        silent.close()
    assert pending.intent_requested is True
    return pending, caller


async def test_a_create_whose_answer_was_lost_is_sent_again_and_stripe_answers_with_the_first(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    pending, caller = await _silently_pending(stack, pool, orders)
    # The lost create did reach Stripe: it made the PaymentIntent under the payment's idempotency key.
    made = await create_intent_as_payments(
        stack, pending.id, pending.order_id, caller.user_id or "", pending.amount_minor
    )

    assert await _reconciled(payments, pool, pending.id) is PaymentStatus.SUCCEEDED
    operations = await _operations(pool, pending.id)
    assert operations[:3] == [("create", "unavailable"), ("create", "ok"), ("confirm", "ok")], operations
    [intent] = intents_for_order(stack, pending.order_id)
    assert intent.id == made and intent.status == "succeeded"


async def test_after_repeated_failed_creates_the_payment_intent_is_searched_for(
    stack: Stack, payments: Payments, orders: FakeOrders, pool: asyncpg.Pool
) -> None:
    """A failed create may be one Stripe keeps answering with the same 5xx: then the list is searched."""
    pending, _ = await _silently_pending(stack, pool, orders)
    async with pool.acquire() as connection:
        for _ in range(2):
            await store.record_attempt(connection, pending.id, "create", "unavailable")

    assert await _reconciled(payments, pool, pending.id) is PaymentStatus.SUCCEEDED
    operations = await _operations(pool, pending.id)
    assert operations[3:6] == [("find", "ok"), ("create", "ok"), ("confirm", "ok")], operations
    assert len(intents_for_order(stack, pending.order_id)) == 1
