"""The order events each transition carries (published to `order-events`, keyed by order id)."""

from __future__ import annotations

from shopmesh.order.v1 import events_pb2
from shopmesh_orders.convert import STATUS_TO_PROTO, item_to_proto, timestamp
from shopmesh_orders.records import Order, OrderStatus
from shopmesh_platform.docstore import OutboxEvent, outbox_event
from shopmesh_platform.events.topics import ORDER_EVENTS


def order_created(order: Order) -> OutboxEvent:
    return outbox_event(
        ORDER_EVENTS,
        order.id,
        events_pb2.OrderCreated(
            occurred_at=timestamp(order.created_at),
            order_id=order.id,
            user_id=order.user_id,
            total_minor=order.total_minor,
            currency=order.currency,
            items=[item_to_proto(line, order.currency) for line in order.lines],
        ),
    )


def order_confirmed(order: Order, payment_id: str) -> OutboxEvent:
    return outbox_event(
        ORDER_EVENTS,
        order.id,
        events_pb2.OrderConfirmed(
            occurred_at=timestamp(order.updated_at),
            order_id=order.id,
            user_id=order.user_id,
            payment_id=payment_id,
        ),
    )


def order_cancelled(order: Order, *, was_paid: bool) -> OutboxEvent:
    return outbox_event(
        ORDER_EVENTS,
        order.id,
        events_pb2.OrderCancelled(
            occurred_at=timestamp(order.updated_at),
            order_id=order.id,
            user_id=order.user_id,
            reason=order.cancellation_reason,
            was_paid=was_paid,
        ),
    )


def order_status_changed(order: Order, previous: OrderStatus) -> OutboxEvent:
    return outbox_event(
        ORDER_EVENTS,
        order.id,
        events_pb2.OrderStatusChanged(
            occurred_at=timestamp(order.updated_at),
            order_id=order.id,
            user_id=order.user_id,
            previous_status=STATUS_TO_PROTO[previous],
            status=STATUS_TO_PROTO[order.status],
        ),
    )
