"""Orders' consumer of `payment-events`: the checkout's outcome moves the order, once.

- PaymentSucceeded: PENDING -> CONFIRMED, OrderConfirmed (inventory commits the stock).
  An order already CANCELLED (expired, or cancelled by its owner) stays CANCELLED:
  payments refunds the payment once it learns of the cancellation.
- PaymentFailed: PENDING -> CANCELLED with reason `payment_failed`, OrderCancelled
  (inventory releases the stock).

Each effect is one transition insert whose unique `cause` is `<group>:<event id>`
(the platform's `CauseInbox` hands it over as the handler's "transaction"): a
redelivered event cannot move the order twice, and of a confirmation racing
expiry or an owner's cancellation exactly one transition wins.
"""

from __future__ import annotations

import logging

from shopmesh.payment.v1 import events_pb2 as payment_events
from shopmesh_orders.domain import Orders
from shopmesh_platform.events.consumer import EventContext, Handlers

logger = logging.getLogger("shopmesh.orders.payment_events")
# The consumer's name: its group is `orders.<name>` (Runtime.consumer).
CONSUMER = "payment-events"


def payment_event_handlers(orders: Orders) -> Handlers[str]:
    """The handlers, by payment event type; the context's transaction is the transition's cause."""
    handlers: Handlers[str] = Handlers()

    async def succeeded(event: payment_events.PaymentSucceeded, context: EventContext[str]) -> None:
        confirmed = await orders.confirm_paid(event.order_id, event.payment_id, cause=context.transaction)
        logger.info(
            "payment succeeded",
            extra={"order_id": event.order_id, "outcome": "confirmed" if confirmed else "not_pending"},
        )

    async def failed(event: payment_events.PaymentFailed, context: EventContext[str]) -> None:
        cancelled = await orders.cancel_unpaid(event.order_id, cause=context.transaction)
        logger.info(
            "payment failed",
            extra={"order_id": event.order_id, "outcome": "cancelled" if cancelled else "not_pending"},
        )

    handlers.register(payment_events.PaymentSucceeded, succeeded)
    handlers.register(payment_events.PaymentFailed, failed)
    return handlers
