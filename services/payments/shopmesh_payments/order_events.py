"""Payments' consumer of `order-events`: a cancelled order's money goes back.

OrderCancelled: the order is recorded as cancelled (`cancelled_orders`, in the
inbox's transaction), then its paid payment, if any, is refunded once (the
refund's request id is derived from the order). Whichever payments learns last
decides when: a payment that succeeds after the cancellation (an order expired
while the customer paid) is refunded by the reconciler's sweep of paid payments
of cancelled orders, as is a refund the provider could not take right now.
"""

from __future__ import annotations

import logging

import asyncpg

from shopmesh.order.v1 import events_pb2 as order_events
from shopmesh_payments.domain import Payments
from shopmesh_platform.errors import FailedPrecondition, Unavailable
from shopmesh_platform.events.consumer import EventContext, Handlers

logger = logging.getLogger("shopmesh.payments.order_events")
# The consumer's name: its group is `payments.<name>` (Runtime.consumer).
CONSUMER = "order-events"


def order_event_handlers(payments: Payments) -> Handlers[asyncpg.Connection]:
    """The handlers, by order event type (only cancellations concern payments)."""
    handlers: Handlers[asyncpg.Connection] = Handlers()

    async def cancelled(event: order_events.OrderCancelled, context: EventContext[asyncpg.Connection]) -> None:
        await payments.record_cancelled_order(context.transaction, event.order_id, event.reason)
        try:
            refunded = await payments.refund_for_cancelled_order(event.order_id)
        except Unavailable:
            # The record above commits with the inbox row; the reconciler's sweep refunds later.
            logger.info("refund of a cancelled order waits for the provider", extra={"order_id": event.order_id})
            return
        except FailedPrecondition as refused:
            logger.warning(
                "refund of a cancelled order refused", extra={"order_id": event.order_id, "reason": refused.reason}
            )
            return
        logger.info("order cancelled", extra={"order_id": event.order_id, "refunded": refunded is not None})

    handlers.register(order_events.OrderCancelled, cancelled)
    return handlers
