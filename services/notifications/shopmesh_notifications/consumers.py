"""Handlers of the events notifications consumes: user, order and payment events.

Each handler runs in the inbox's transaction (`context.transaction`), so the
notification, its mail and the contact it updates commit with the record that
the event was applied: one notification and at most one mail per event,
whatever Kafka redelivers. An event without a user cannot be applied and is
dead-lettered at once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
from google.protobuf.message import Message

from shopmesh.order.v1 import events_pb2 as order_events
from shopmesh.payment.v1 import events_pb2 as payment_events
from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_notifications import drafts, store
from shopmesh_notifications.feed import Feed, occurred_at
from shopmesh_platform.events.consumer import EventContext, Handlers, PoisonEvent

EventT = TypeVar("EventT", bound=Message)
Context = EventContext[asyncpg.Connection]
# An address from an event without a time is older than any timed one.
EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)


def _require_user(user_id: str) -> None:
    try:
        uuid.UUID(user_id)
    except ValueError:
        raise PoisonEvent("the event names no valid user id") from None


def _notify(feed: Feed, to_draft: Callable[[Any], drafts.Draft]) -> Callable[[Any, Context], Any]:
    async def handle(event: Any, context: Context) -> None:
        _require_user(event.user_id)
        at = occurred_at(event.occurred_at, event.HasField("occurred_at"))
        await feed.record(context.transaction, context.event_id, to_draft(event), at)

    return handle


def _welcome(feed: Feed) -> Callable[[user_events.UserRegistered, Context], Any]:
    async def handle(event: user_events.UserRegistered, context: Context) -> None:
        _require_user(event.user_id)
        at = occurred_at(event.occurred_at, event.HasField("occurred_at"))
        if event.email:
            await store.save_contact(context.transaction, event.user_id, event.email, event.first_name, at or EPOCH)
        await feed.record(context.transaction, context.event_id, drafts.welcome(event), at)

    return handle


def notification_handlers(feed: Feed) -> Handlers[asyncpg.Connection]:
    """Every event type a customer hears about, with what it tells them."""
    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, _welcome(feed))
    handlers.register(order_events.OrderCreated, _notify(feed, drafts.order_created))
    handlers.register(order_events.OrderConfirmed, _notify(feed, drafts.order_confirmed))
    handlers.register(order_events.OrderCancelled, _notify(feed, drafts.order_cancelled))
    handlers.register(order_events.OrderStatusChanged, _notify(feed, drafts.order_status_changed))
    handlers.register(payment_events.PaymentFailed, _notify(feed, drafts.payment_failed))
    handlers.register(payment_events.PaymentRefunded, _notify(feed, drafts.payment_refunded))
    return handlers
