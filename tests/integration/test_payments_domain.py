"""CreatePayment's rules on the real payments database and localstripe, with the orders
service replaced by a fake OrderLookup (the one port whose service is not built yet).

The same flows over REST through the edge, against the real orders service, are in
pending_test_checkout_payments.py, to be enabled when orders lands.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shopmesh_payments import store
from shopmesh_payments.config import ReconcileConfig, StripeConfig
from shopmesh_payments.domain import NewPayment, Payments
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.records import OrderSnapshot, PaymentStatus
from shopmesh_payments.stripe_gateway import StripeGateway
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shopmesh_stack.components import LOCALSTRIPE_WEBHOOK_SECRET
from shopmesh_stack.stack import Stack
from tests.integration.payments_support import intents_for_order, outbox_types, stripe_refunds


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


@pytest.fixture
def payments(stack: Stack, pool: asyncpg.Pool, orders: FakeOrders) -> Payments:
    metrics = PaymentMetrics()
    gateway = StripeGateway(
        StripeConfig(
            api_base=stack.localstripe.api_base,
            api_key=stack.localstripe.api_key,
            webhook_secret=LOCALSTRIPE_WEBHOOK_SECRET,
            timeout_seconds=10,
            breaker_failures=5,
            breaker_open_seconds=5,
        ),
        metrics,
    )
    return Payments(pool, orders, gateway, ReconcileConfig(30, 1, 1), metrics)


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
