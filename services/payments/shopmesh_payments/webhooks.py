"""Stripe webhooks: verified over the raw body first, each event id applied once.

The signature and timestamp are checked (WebhookVerifier) before anything
parses the body. The event id is recorded in `processed_webhook_events` in the
same transaction as its effect, so a redelivered event does nothing.
"""

from __future__ import annotations

import logging

import asyncpg

from shopmesh_payments import store
from shopmesh_payments.domain import DOMAIN, Payments, metadata_order_id
from shopmesh_payments.ports import InvalidWebhook, WebhookVerifier
from shopmesh_payments.records import PaymentRecord, PaymentStatus, WebhookEvent
from shopmesh_payments.stripe_objects import charge_refunds, intent_state
from shopmesh_platform.errors import FieldViolation, InvalidArgument

logger = logging.getLogger("shopmesh.payments.webhooks")
INTENT_EVENTS = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"})
CHARGE_REFUNDED = "charge.refunded"


def _refused(message: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        message,
        reason=reason,
        domain=DOMAIN,
        field_violations=[FieldViolation("stripe-signature", message, reason)],
    )


class StripeWebhooks:
    def __init__(self, payments: Payments, verifier: WebhookVerifier, pool: asyncpg.Pool) -> None:
        self._payments = payments
        self._verifier = verifier
        self._pool = pool

    async def handle(self, body: bytes, signature: str | None) -> bool:
        """Apply one delivery; returns True if its event had been processed before."""
        if not signature:
            raise _refused("the Stripe-Signature header is missing", "WEBHOOK_SIGNATURE_MISSING")
        try:
            event = self._verifier.verify(body, signature)
        except InvalidWebhook:
            raise _refused(
                "the webhook signature does not verify (wrong signature, old timestamp or changed body)",
                "WEBHOOK_SIGNATURE_INVALID",
            ) from None
        changed: list[PaymentStatus] = []
        async with self._pool.acquire() as connection, connection.transaction():
            if not await store.mark_event_processed(connection, event.id, event.type):
                return True
            changed = await self._apply(connection, event)
        self._payments.count(changed)
        return False

    async def _apply(self, connection: asyncpg.Connection, event: WebhookEvent) -> list[PaymentStatus]:
        if event.type in INTENT_EVENTS:
            intent = intent_state(event.data_object)
            payment = await self._payment_of(connection, intent.id, metadata_order_id(intent.metadata))
            if payment is None:
                logger.info("webhook for a PaymentIntent that is not ours", extra={"event_type": event.type})
                return []
            return await self._payments.apply_intent_in(connection, payment.id, intent)
        if event.type == CHARGE_REFUNDED:
            intent_id = event.data_object.get("payment_intent")
            if not isinstance(intent_id, str):
                return []
            payment = await self._payment_of(connection, intent_id, None)
            if payment is None:
                logger.info("charge.refunded for a payment that is not ours")
                return []
            amount = event.data_object.get("amount_refunded")
            await self._payments.apply_charge_refunds_in(
                connection,
                payment,
                charge_refunds(event.data_object),
                amount if isinstance(amount, int) else 0,
            )
            return []
        return []

    @staticmethod
    async def _payment_of(connection: asyncpg.Connection, intent_id: str, order_id: str | None) -> PaymentRecord | None:
        payment = await store.find_by_intent(connection, intent_id)
        if payment is None and order_id is not None:
            # Its id was never recorded (a crash between creating and recording it).
            payment = await store.find_by_order(connection, order_id)
            if payment is not None and payment.stripe_payment_intent_id not in (None, intent_id):
                return None
        return payment
