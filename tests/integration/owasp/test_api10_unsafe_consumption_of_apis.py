"""OWASP API10:2023 Unsafe Consumption of APIs.

shopmesh consumes one third-party API, Stripe: its answers to the payments
service's calls, the webhooks it sends, and the PaymentIntents the reconciler
re-reads.

What shopmesh does: a webhook's `Stripe-Signature` is checked over the raw body
(HMAC with the endpoint's secret, 300 s timestamp tolerance) before anything
parses it; a body that is not a Stripe event is refused like a bad signature;
each event id is applied once, in the transaction of its effect. What Stripe says
is then read defensively (shopmesh_payments.stripe_objects): only known statuses
count, numbers must be integers, and an event changes only a payment of ours,
found by the PaymentIntent id recorded for it (or, for an id a crash left
unrecorded, by the order in its metadata, if no other intent is recorded). A
PaymentIntent reported as succeeded settles a payment only if its amount and
currency are the payment's own; anything else leaves the payment unsettled and
the order unpaid, and is logged for an operator. Calls to Stripe have timeouts
and a circuit breaker (503 while it is open), never a hang.

What these tests prove, through the edge: webhooks with a wrong secret, an old
timestamp, a changed body, no or a malformed signature, or a signed body that is
not an event are 400 and change nothing; a replayed event has one effect; a
signed event about an intent that is not ours changes nothing; and a signed
"succeeded" whose amount or currency differs from the payment's does not mark
it paid or emit PaymentSucceeded.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from shopmesh_stack.stack import Stack
from tests.integration.helpers import http
from tests.integration.payments_support import (
    WEBHOOK,
    event_payload,
    outbox_types,
    payment_row,
    payments_db,
    post_webhook,
    seed_payment,
)

AMOUNT_MINOR = 5998


def intent(intent_id: str, order_id: str, user_id: str, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    """A PaymentIntent object as Stripe's events carry it."""
    return {
        "id": intent_id,
        "object": "payment_intent",
        "status": status,
        "amount": AMOUNT_MINOR,
        "currency": "usd",
        "metadata": {"order_id": order_id, "user_id": user_id},
        **extra,
    }


async def processed(connection: asyncpg.Connection, event_id: str) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM processed_webhook_events WHERE stripe_event_id = $1", event_id
    )
    return count


@pytest.fixture
async def pending_payment(stack: Stack) -> Any:
    """A payment awaiting Stripe's word (held, so the reconciler leaves it to the webhooks): (connection, row ids).

    Its user id is only a column of the payments database: no account needs to be registered.
    """
    user_id = str(uuid.uuid4())
    connection = await payments_db(stack)
    intent_id = f"pi_owasp_{uuid.uuid4().hex[:14]}"
    payment_id, order_id = await seed_payment(
        connection, user_id=user_id, amount_minor=AMOUNT_MINOR, intent_id=intent_id, held=True
    )
    try:
        yield connection, payment_id, order_id, intent_id, user_id
    finally:
        await connection.close()


async def test_webhooks_that_do_not_verify_are_refused_and_change_nothing(stack: Stack, pending_payment: Any) -> None:
    connection, payment_id, order_id, intent_id, user_id = pending_payment
    payload = event_payload("payment_intent.succeeded", intent(intent_id, order_id, user_id))
    event_id = json.loads(payload)["id"]
    refusals = {
        "wrong secret": post_webhook(stack, payload, secret="whsec_someone_else"),
        "old timestamp": post_webhook(stack, payload, timestamp=int(time.time()) - 3600),
        "future timestamp": post_webhook(stack, payload, timestamp=int(time.time()) + 3600),
        "changed body": post_webhook(stack, payload, body=payload.replace(order_id, str(uuid.uuid4()))),
        "no signature": http(stack, "POST", WEBHOOK, payload),
        "malformed signature": http(stack, "POST", WEBHOOK, payload, {"Stripe-Signature": "t=1,v0=abc"}),
        "signed, not an event": post_webhook(stack, '{"hello": "world"}'),
        "signed, not JSON": post_webhook(stack, "<xml>payment_intent.succeeded</xml>"),
    }
    for what, reply in refusals.items():
        assert reply.status == 400, (what, reply.status, reply.body)
        assert "WEBHOOK_SIGNATURE" in reply.body.decode(), what
    assert (await payment_row(connection, payment_id))["status"] == "PENDING"
    assert await processed(connection, event_id) == 0
    assert await outbox_types(connection, order_id) == []
    # Signed as Stripe signs it, the same event is taken: the refusals were about trust, not content.
    accepted = post_webhook(stack, payload)
    assert accepted.status == 200, accepted.body
    assert (await payment_row(connection, payment_id))["status"] == "SUCCEEDED"
    assert post_webhook(stack, payload).json()["duplicate"] is True  # a replay has no second effect
    assert await outbox_types(connection, order_id) == ["PaymentSucceeded"]


async def test_a_signed_event_about_an_intent_that_is_not_ours_changes_nothing(
    stack: Stack, pending_payment: Any
) -> None:
    connection, payment_id, order_id, _, user_id = pending_payment
    # Another intent naming our order in its metadata: our payment already records its own intent.
    stranger = intent(f"pi_other_{uuid.uuid4().hex[:12]}", order_id, user_id)
    reply = post_webhook(stack, event_payload("payment_intent.succeeded", stranger))
    assert reply.status == 200, reply.body
    assert (await payment_row(connection, payment_id))["status"] == "PENDING"
    assert await outbox_types(connection, order_id) == []


@pytest.mark.parametrize(
    "difference", [{"amount": 1}, {"amount": AMOUNT_MINOR * 10}, {"currency": "eur"}, {"amount": "5998.0"}]
)
async def test_a_succeeded_intent_for_another_amount_does_not_pay_the_order(
    stack: Stack, pending_payment: Any, difference: dict[str, Any]
) -> None:
    connection, payment_id, order_id, intent_id, user_id = pending_payment
    reply = post_webhook(
        stack, event_payload("payment_intent.succeeded", intent(intent_id, order_id, user_id) | difference)
    )
    assert reply.status == 200, reply.body  # acknowledged, so Stripe does not redeliver it forever
    row = await payment_row(connection, payment_id)
    assert row["status"] != "SUCCEEDED", difference
    assert "PaymentSucceeded" not in await outbox_types(connection, order_id)
