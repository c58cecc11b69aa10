"""PENDING (not collected: its name does not start with `test_`): the checkout trace of issue 15.

A checkout in the test instance, paid with `pm_card_visa` under one `traceparent`:
the payment request's trace, read back from Jaeger's query API, holds the
payments server span and, below it (through the payment events' send spans), the
Kafka consumer spans of orders (the confirmation), inventory (the stock commit)
and notifications (the notification it led to).

It waits for the business consumers (orders, payments, notifications are being
built). Once they are in main, rename it to `test_checkout_trace.py`, check the
REST shapes below against the contracts, and run it; the platform side it relies
on (spans, `traceparent` through the outbox and Kafka, Jaeger) is what
tests/integration/test_traces.py already checks with a test consumer.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from shopmesh_stack.stack import Stack
from shopmesh_stack.traces import Span, Trace, render_tree
from tests.integration.helpers import http
from tests.integration.test_traces import new_traceparent, server_span, trace_where
from tests.integration.users_client import register

# The consumers of the payment's events, by service: each must answer in the payment's trace.
CONSUMING = {"orders": "payment-events", "inventory": "order-events", "notifications": "order-events"}


def consumer_below(found: Trace, service: str, topic: str, ancestor: Span) -> Span | None:
    return next(
        (
            s
            for s in found.spans
            if s.service == f"shopmesh-{service}"
            and s.kind == "consumer"
            and s.operation == f"{topic} process"
            and found.descends_from(s, ancestor)
        ),
        None,
    )


async def test_a_checkout_payment_is_one_trace_through_every_consumer(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    products = (await asyncio.to_thread(http, stack, "GET", "/api/v1/products")).json()["products"]
    product = products[0]
    order_body = {
        "userId": account.id,
        "items": [{"productId": product["id"], "quantity": 1}],
        "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"},
        "requestId": str(uuid.uuid4()),
    }
    order = await asyncio.to_thread(http, stack, "POST", "/api/v1/orders", json.dumps(order_body), account.bearer)
    assert order.status == 200, order.body
    trace_id, _, traceparent = new_traceparent()
    payment_body = {
        "orderId": order.json()["id"],
        "amount": order.json()["total"],
        "currency": order.json()["currency"],
        "paymentMethodId": "pm_card_visa",
    }
    headers = {**account.bearer, "traceparent": traceparent}
    paid = await asyncio.to_thread(http, stack, "POST", "/api/v1/payments", json.dumps(payment_body), headers)
    assert paid.status == 200, paid.body

    def complete(found: Trace) -> bool:
        server = server_span(found, "shopmesh-payments", "/CreatePayment")
        return server is not None and all(
            consumer_below(found, service, topic, server) is not None for service, topic in CONSUMING.items()
        )

    found = await trace_where(stack, trace_id, complete)
    server = server_span(found, "shopmesh-payments", "/CreatePayment")
    assert server is not None
    for service, topic in CONSUMING.items():
        consumed = consumer_below(found, service, topic, server)
        assert consumed is not None, render_tree(found)
        parent = found.by_id(consumed.parent_id or "")
        # Each consumer span is the child of the send of the event it consumed.
        assert parent is not None and parent.kind == "producer", render_tree(found)
