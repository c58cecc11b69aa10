"""Inventory's consumer of `order-events`: the only way an order's stock is released or committed.

- OrderCreated: the order exists, so its reservation is no orphan (`mark_order_seen`).
- OrderCancelled: release the reservation, or return its units if it was committed (`cancel`).
- OrderConfirmed: take the reserved units off the shelf (`commit`).

Each effect runs inside the platform inbox's transaction (`processed_events`),
so effect and inbox row commit together; the domain functions are idempotent by
order id as well, so even an event id seen twice moves stock once.
"""

from __future__ import annotations

import logging

import asyncpg

from shopmesh.order.v1 import events_pb2 as order_events
from shopmesh_inventory.domain import Inventory
from shopmesh_platform.events.consumer import EventContext, Handlers

logger = logging.getLogger("shopmesh.inventory.order_events")
# The consumer's name: its group is `inventory.<name>` (Runtime.consumer).
CONSUMER = "order-events"


def order_event_handlers(inventory: Inventory) -> Handlers[asyncpg.Connection]:
    """The handlers, by order event type."""
    handlers: Handlers[asyncpg.Connection] = Handlers()

    async def created(event: order_events.OrderCreated, context: EventContext[asyncpg.Connection]) -> None:
        await inventory.mark_order_seen(event.order_id, connection=context.transaction)

    async def cancelled(event: order_events.OrderCancelled, context: EventContext[asyncpg.Connection]) -> None:
        outcome = await inventory.cancel(event.order_id, event.reason, connection=context.transaction)
        logger.info("order cancelled", extra={"order_id": event.order_id, "settlement": outcome.value})

    async def confirmed(event: order_events.OrderConfirmed, context: EventContext[asyncpg.Connection]) -> None:
        outcome = await inventory.commit(event.order_id, connection=context.transaction)
        logger.info("order confirmed", extra={"order_id": event.order_id, "settlement": outcome.value})

    handlers.register(order_events.OrderCreated, created)
    handlers.register(order_events.OrderCancelled, cancelled)
    handlers.register(order_events.OrderConfirmed, confirmed)
    return handlers
