"""CreatePayment end to end over REST, against the real orders service: success, a
declined card, refusals that charge nothing, one PaymentIntent per order. What the
payment then does to the order (the saga) is tested in test_checkout.py.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shopmesh_stack.stack import Stack
from tests.integration.payments_support import intents_for_order
from tests.integration.users_client import Account, call, register

ITEMS = [{"productId": "prod-123", "quantity": 2, "price": 29.99}]
ADDRESS = {"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "US"}


def place_order(stack: Stack, account: Account) -> dict[str, Any]:
    reply = call(
        stack, "POST", "/api/v1/orders", account, {"userId": account.id, "items": ITEMS, "shippingAddress": ADDRESS}
    )
    assert reply.status == 200, reply.body
    order: dict[str, Any] = reply.json()
    return order


def pay(stack: Stack, account: Account, order: dict[str, Any], **overrides: Any) -> Any:
    body = {
        "orderId": order["id"],
        "amount": order["totalAmount"],
        "currency": order.get("currency") or "USD",
        "paymentMethodId": "pm_card_visa",
        **overrides,
    }
    return call(stack, "POST", "/api/v1/payments", account, body)


def test_a_visa_payment_over_rest(stack: Stack) -> None:
    account = register(stack)
    order = place_order(stack, account)
    reply = pay(stack, account, order)
    assert reply.status == 200, reply.body
    assert reply.json()["status"] == "PAYMENT_STATUS_SUCCEEDED" and reply.json()["amount"] == 59.98


def test_a_declined_card_answers_failed_with_the_decline_code(stack: Stack) -> None:
    account = register(stack)
    order = place_order(stack, account)
    reply = pay(stack, account, order, paymentMethodId="pm_card_chargeCustomerFail")
    assert reply.status == 200, reply.body
    assert (reply.json()["status"], reply.json()["failureReason"]) == ("PAYMENT_STATUS_FAILED", "card_declined")


def test_mismatches_and_other_peoples_orders_are_4xx_and_charge_nothing(stack: Stack) -> None:
    account, stranger = register(stack), register(stack)
    order = place_order(stack, account)
    assert pay(stack, account, order, amount=1.0).status == 400
    assert pay(stack, account, order, currency="EUR").status == 400
    assert pay(stack, stranger, order).status == 404
    assert pay(stack, account, {"id": str(uuid.uuid4()), "totalAmount": 59.98}).status == 404
    assert intents_for_order(stack, order["id"]) == []
    assert pay(stack, account, order).status == 200
    assert pay(stack, account, order).status in (400, 409)  # already paid
    assert len(intents_for_order(stack, order["id"])) == 1


def test_retries_and_concurrent_attempts_make_one_payment_intent(stack: Stack) -> None:
    account = register(stack)
    order = place_order(stack, account)
    request_id = str(uuid.uuid4())
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: pay(stack, account, order, requestId=request_id), range(4)))
    assert {r.status for r in replies} == {200}
    assert len({r.json()["paymentId"] for r in replies}) == 1
    assert len(intents_for_order(stack, order["id"])) == 1
