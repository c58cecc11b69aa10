"""A checkout's payment is one trace, read back from Jaeger's query API (issue 15).

An order in the test instance is paid with `pm_card_visa` through the edge, the
request carrying the caller's `traceparent`. The payment request's trace holds:

  payments  CreatePayment [server]              (child of the caller's span)
    payments  payment-events send [producer]    (its outbox relay, PaymentSucceeded)
      orders  payment-events process [consumer] (the order confirmed)
        orders  order-events send [producer]    (its outbox relay, OrderConfirmed)
          inventory      order-events process   (the stock committed)
          notifications  order-events process   (the customer's notification)

and the consumers' log lines carry that trace's id and their own span's id.

With Jaeger stopped, a checkout still goes through (spans are dropped, never a
failed or stuck call); once Jaeger is back, the services' traces reach it again.

The PaymentSucceeded event is written by whichever route settles the payment
first: CreatePayment itself, or localstripe's webhook (sent one second after the
confirmation, in a trace of its own). On a slow machine the webhook can win; the
attempt is then repeated with a new order (the payments outbox says which trace
wrote the event), so the assertion is always about the payment request's trace.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from shopmesh_stack.stack import Stack
from shopmesh_stack.traces import EVENT_TYPE_TAG, Span, Trace, render_tree
from tests.integration.helpers import http
from tests.integration.orders_client import place
from tests.integration.payments_support import payments_db
from tests.integration.test_checkout import CONFIRMED as ORDER_CONFIRMED
from tests.integration.test_checkout import order_reaches
from tests.integration.test_traces import new_traceparent, server_span, trace_where
from tests.integration.users_client import PASSWORD, Account, register, unique_email
from tests.polling import eventually

PRODUCT = "prod-123"
ATTEMPTS = 3
LOG_DEADLINE_SECONDS = 60
SUCCEEDED, CONFIRMED = "shopmesh.payment.v1.PaymentSucceeded", "shopmesh.order.v1.OrderConfirmed"
# The consumers of the order's confirmation, each in the payment's trace.
CONFIRMATION_CONSUMERS = ("inventory", "notifications")


def consumer(found: Trace, service: str, topic: str, event_type: str) -> Span | None:
    return next(
        (
            s
            for s in found.spans
            if s.service == f"shopmesh-{service}"
            and s.kind == "consumer"
            and s.operation == f"{topic} process"
            and s.tags.get(EVENT_TYPE_TAG) == event_type
        ),
        None,
    )


def sender(found: Trace, span: Span | None) -> Span | None:
    """The producer span a consumer span continues (its parent)."""
    parent = found.by_id(span.parent_id or "") if span is not None else None
    return parent if parent is not None and parent.kind == "producer" else None


def complete(found: Trace) -> bool:
    return server_span(found, "shopmesh-payments", "/CreatePayment") is not None and all(
        consumer(found, service, "order-events", CONFIRMED) is not None for service in CONFIRMATION_CONSUMERS
    )


def pay(stack: Stack, account: Account, order: dict[str, Any], traceparent: str) -> dict[str, Any]:
    body = {
        "orderId": order["id"],
        "amount": order["totalAmount"],
        "currency": "USD",
        "paymentMethodId": "pm_card_visa",
    }
    headers = {**account.bearer, "traceparent": traceparent}
    reply = http(stack, "POST", "/api/v1/payments", json.dumps(body), headers)
    assert reply.status == 200, reply.body
    payment: dict[str, Any] = reply.json()
    assert payment["status"] == "PAYMENT_STATUS_SUCCEEDED", payment
    return payment


async def succeeded_event_trace(stack: Stack, order_id: str) -> str | None:
    """The trace id of the traceparent PaymentSucceeded was written with (payments' outbox)."""
    connection = await payments_db(stack)
    try:
        traceparent = await connection.fetchval(
            "SELECT traceparent FROM outbox WHERE aggregate_id = $1 AND event_type = $2", order_id, SUCCEEDED
        )
    finally:
        await connection.close()
    return traceparent.split("-")[1] if traceparent else None


async def paid_in_its_own_trace(stack: Stack, account: Account) -> tuple[str, str, dict[str, Any]]:
    """(trace id, caller span id, order) of a payment whose own call wrote PaymentSucceeded."""
    writers = []
    for _ in range(ATTEMPTS):
        order = await asyncio.to_thread(place, stack, account, [(PRODUCT, 1, 29.99)])
        trace_id, caller_span, traceparent = new_traceparent()
        await asyncio.to_thread(pay, stack, account, order, traceparent)
        writer = await succeeded_event_trace(stack, order["id"])
        if writer == trace_id:
            return trace_id, caller_span, order
        writers.append(writer)  # the webhook (or the reconciler) settled it first
    raise AssertionError(f"in {ATTEMPTS} payments the call never settled first; event traces: {writers}")


def log_entries(path: Path, message: str, order_id: str) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if order_id in line and message in line:
            entry = json.loads(line)
            if entry.get("message") == message and entry.get("order_id") == order_id:
                entries.append(entry)
    return entries


async def logged(stack: Stack, service: str, message: str, order_id: str) -> dict[str, Any]:
    path = stack.settings.log_dir / f"{service}.log"
    found = await eventually(
        lambda: asyncio.to_thread(log_entries, path, message, order_id),
        bool,
        timeout=LOG_DEADLINE_SECONDS,
        interval=0.5,
    )
    return found[-1]


async def test_a_checkout_payment_is_one_trace_through_every_consumer(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    trace_id, caller_span, order = await paid_in_its_own_trace(stack, account)

    found = await trace_where(stack, trace_id, complete)
    tree = render_tree(found)
    assert found.trace_id == trace_id
    payment = server_span(found, "shopmesh-payments", "/CreatePayment")
    assert payment is not None and payment.parent_id == caller_span, tree

    # payments -> orders: the PaymentSucceeded send, under the call; its consumer, under the send.
    confirming = consumer(found, "orders", "payment-events", SUCCEEDED)
    payment_send = sender(found, confirming)
    assert confirming is not None and payment_send is not None, tree
    assert payment_send.service == "shopmesh-payments" and payment_send.operation == "payment-events send", tree
    assert found.descends_from(payment_send, payment), tree

    # orders -> inventory, notifications: the OrderConfirmed send, under orders' consumer span.
    order_sends = set()
    for service in CONFIRMATION_CONSUMERS:
        applied = consumer(found, service, "order-events", CONFIRMED)
        order_send = sender(found, applied)
        assert applied is not None and order_send is not None, tree
        assert order_send.service == "shopmesh-orders" and order_send.operation == "order-events send", tree
        assert found.descends_from(order_send, confirming), tree
        order_sends.add(order_send.span_id)
        # Each effect's own database work is in the trace, under its consumer span.
        assert any(s.kind == "client" and found.descends_from(s, applied) for s in found.spans), tree
    assert len(order_sends) == 1, tree  # one OrderConfirmed, consumed by both
    print(tree)  # shown with -s: the README's example comes from here

    # Log lines carry the trace id and the id of the span they were written in.
    orders_line = await logged(stack, "orders", "payment succeeded", order["id"])
    assert (orders_line.get("trace_id"), orders_line.get("span_id")) == (trace_id, confirming.span_id)
    inventory_span = consumer(found, "inventory", "order-events", CONFIRMED)
    inventory_line = await logged(stack, "inventory", "order confirmed", order["id"])
    assert inventory_span is not None
    assert (inventory_line.get("trace_id"), inventory_line.get("span_id")) == (trace_id, inventory_span.span_id)


@pytest.mark.stops_components
async def test_with_jaeger_down_a_checkout_goes_through_and_traces_resume_once_it_is_back(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    stack.stop(stack.jaeger)
    try:
        order = await asyncio.to_thread(place, stack, account, [(PRODUCT, 1, 29.99)])
        _, _, traceparent = new_traceparent()
        await asyncio.to_thread(pay, stack, account, order, traceparent)
        # Every hop of the saga still happens: payments -> orders (Kafka) -> CONFIRMED.
        await order_reaches(stack, account, order["id"], ORDER_CONFIRMED)
    finally:
        stack.start(stack.jaeger)
    trace_id, _, traceparent = new_traceparent()
    body = {"email": unique_email("after-jaeger"), "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}
    reply = await asyncio.to_thread(
        http, stack, "POST", "/api/v1/users/register", json.dumps(body), {"traceparent": traceparent}
    )
    assert reply.status == 200, reply.body
    await trace_where(stack, trace_id, lambda t: server_span(t, "shopmesh-users", "/RegisterUser") is not None)
