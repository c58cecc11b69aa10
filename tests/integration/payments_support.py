"""Helpers for the payments tests: the stack's localstripe through the stripe library,
the payments database, seeded payments, self-signed webhooks, admin accounts.

Payments for orders cannot be made end to end until the orders service exists, so
these tests seed payment rows the way CreatePayment leaves them and drive the rest
(webhooks, reconciler, refunds, breaker) through the real service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import stripe

from shopmesh_payments.config import StripeConfig
from shopmesh_payments.domain import intent_key
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.stripe_gateway import StripeGateway
from shopmesh_stack.components import LOCALSTRIPE_WEBHOOK_SECRET
from shopmesh_stack.stack import Stack
from tests.integration.helpers import HttpReply, http
from tests.integration.users_client import PASSWORD, Account, call, register

WEBHOOK = "/api/v1/webhooks/stripe"


def stripe_client(stack: Stack) -> stripe.StripeClient:
    return stripe.StripeClient(
        stack.localstripe.api_key, base_addresses={"api": stack.localstripe.api_base}, max_network_retries=0
    )


async def payments_db(stack: Stack) -> asyncpg.Connection:
    return await asyncpg.connect(stack.postgres.dsn("payments"))


def create_intent(
    stack: Stack, order_id: str, user_id: str, amount_minor: int, *, payment_method: str = "pm_card_visa"
) -> str:
    """An unconfirmed PaymentIntent carrying the order in its metadata, as CreatePayment creates it."""
    params: dict[str, Any] = {
        "amount": amount_minor,
        "currency": "usd",
        "payment_method": payment_method,
        "payment_method_types": ["card"],
        "metadata": {"order_id": order_id, "user_id": user_id},
    }
    intent = stripe_client(stack).v1.payment_intents.create(params=params)  # type: ignore[arg-type]
    return str(intent.id)


async def create_intent_as_payments(
    stack: Stack, payment_id: str, order_id: str, user_id: str, amount_minor: int
) -> str:
    """The PaymentIntent payments' own create makes for a USD card payment (same parameters, same idempotency key)."""
    gateway = StripeGateway(
        StripeConfig(stack.localstripe.api_base, stack.localstripe.api_key, LOCALSTRIPE_WEBHOOK_SECRET, 10, 5, 5),
        PaymentMetrics(),
    )
    intent = await gateway.create_intent(
        amount_minor=amount_minor,
        currency="USD",
        payment_method="pm_card_visa",
        metadata={"order_id": order_id, "user_id": user_id, "payment_id": payment_id},
        idempotency_key=intent_key(order_id, "create"),
    )
    return intent.id


def confirm_intent(stack: Stack, intent_id: str) -> str:
    return str(stripe_client(stack).v1.payment_intents.confirm(intent_id).status)


def intent_status(stack: Stack, intent_id: str) -> str:
    return str(stripe_client(stack).v1.payment_intents.retrieve(intent_id).status)


def stripe_refunds(stack: Stack, intent_id: str) -> list[Any]:
    return list(stripe_client(stack).v1.refunds.list(params={"payment_intent": intent_id, "limit": 100}).data)


def intents_for_order(stack: Stack, order_id: str) -> list[Any]:
    found, starting_after = [], None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = stripe_client(stack).v1.payment_intents.list(params=params)  # type: ignore[arg-type]
        found += [pi for pi in page.data if pi.to_dict().get("metadata", {}).get("order_id") == order_id]
        if not page.has_more or not page.data:
            return found
        starting_after = page.data[-1].id


async def seed_payment(
    connection: asyncpg.Connection,
    *,
    user_id: str,
    amount_minor: int,
    status: str = "PENDING",
    intent_id: str | None = None,
    order_id: str | None = None,
    held: bool = False,
) -> tuple[str, str]:
    """A payment row as CreatePayment leaves it; `held`: someone drives it, so the reconciler stays away.

    Returns (payment id, order id).
    """
    payment_id, order_id = str(uuid.uuid4()), order_id or str(uuid.uuid4())
    await connection.execute(
        """INSERT INTO payments (id, order_id, user_id, amount_minor, currency, payment_method, status,
                                 stripe_payment_intent_id, metadata, lease_until)
           VALUES ($1, $2, $3, $4, 'USD', 'pm_card_visa', $5, $6, $7,
                   CASE WHEN $8 THEN now() + interval '1 hour' END)""",
        uuid.UUID(payment_id),
        uuid.UUID(order_id),
        uuid.UUID(user_id),
        amount_minor,
        status,
        intent_id,
        json.dumps({"order_id": order_id, "user_id": user_id}),
        held,
    )
    return payment_id, order_id


async def payment_row(connection: asyncpg.Connection, payment_id: str) -> asyncpg.Record:
    row = await connection.fetchrow("SELECT * FROM payments WHERE id = $1", uuid.UUID(payment_id))
    assert row is not None
    return row


async def outbox_types(connection: asyncpg.Connection, order_id: str) -> list[str]:
    rows = await connection.fetch("SELECT event_type FROM outbox WHERE aggregate_id = $1 ORDER BY id", order_id)
    return [row["event_type"].rsplit(".", 1)[-1] for row in rows]


def event_payload(event_type: str, data_object: Mapping[str, Any], event_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": event_id or f"evt_test_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": dict(data_object)},
        }
    )


def post_webhook(
    stack: Stack,
    payload: str,
    *,
    timestamp: int | None = None,
    secret: str = LOCALSTRIPE_WEBHOOK_SECRET,
    body: str | None = None,
) -> HttpReply:
    """POST a webhook signed over `payload` (and send `body` instead, to tamper with it)."""
    signature = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return http(
        stack, "POST", WEBHOOK, (body if body is not None else payload).encode(), {"Stripe-Signature": signature}
    )


def admin(stack: Stack) -> Account:
    """A new account promoted to admin, with a token carrying the role."""
    account = register(stack)
    promoted = subprocess.run(
        [sys.executable, "-m", "shopmesh_users.admin", "promote", account.email],
        env={**os.environ, "SHOPMESH_DATABASE_URL": stack.postgres.dsn("users")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert promoted.returncode == 0, promoted.stderr
    login = call(stack, "POST", "/api/v1/users/login", body={"email": account.email, "password": PASSWORD})
    assert login.status == 200, login.body
    return Account(account.id, account.email, str(login.json()["token"]))


def refund(stack: Stack, by: Account, payment_id: str, amount: float, request_id: str) -> HttpReply:
    return call(
        stack,
        "POST",
        f"/api/v1/payments/{payment_id}:refund",
        by,
        {"amount": amount, "reason": "test", "requestId": request_id},
    )


def metric(stack: Stack, name: str) -> float | None:
    """A sample of the payments service's metrics endpoint (exact name with labels), if present."""
    import urllib.request

    url = f"http://127.0.0.1:{stack.settings.ports.metrics('payments')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None
