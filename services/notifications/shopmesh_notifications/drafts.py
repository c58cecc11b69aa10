"""What each consumed event tells the customer: the notification, and the mail if one is expected.

Pure rules (no database, no grpc): an event in, a `Draft` out. Mails go out for
the events a customer expects one for (welcome, order confirmed, order
cancelled, refund); the other notifications stay in the feed. Ids are derived
from the event id, so a replayed event always yields the same notification id
and the same Message-ID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shopmesh.order.v1 import events_pb2 as order_events
from shopmesh.order.v1 import order_service_pb2 as orders
from shopmesh.payment.v1 import events_pb2 as payment_events
from shopmesh.user.v1 import events_pb2 as user_events

# uuid5 namespace of notification ids (a fixed random UUID: ids only need to be stable).
NOTIFICATION_NAMESPACE = uuid.UUID("0d6f5e49-3f0e-4a51-9a37-5b7c5c2f3e8a")
MESSAGE_ID_DOMAIN = "notifications.shopmesh"

# Why an order was cancelled, in the words a customer reads (other reasons, e.g. an admin's note, as given).
CANCELLATION_REASONS = {
    "payment_failed": "the payment did not go through",
    "reservation_expired": "it was not paid in time",
    "cancelled_by_owner": "you cancelled it",
}


@dataclass(frozen=True)
class MailDraft:
    subject: str
    body: str


@dataclass(frozen=True)
class Draft:
    """One notification for `user_id` (kind is the lower-case name of NotificationKind without prefix)."""

    user_id: str
    kind: str
    title: str
    body: str
    order_id: str = ""
    reason: str = ""
    mail: MailDraft | None = None


def notification_id(event_id: str) -> str:
    """The notification an event produces, the same for every delivery of it."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, event_id))


def message_id(event_id: str) -> str:
    """The Message-ID of the mail an event produces (RFC 5322, with the angle brackets)."""
    return f"<{uuid.UUID(event_id)}@{MESSAGE_ID_DOMAIN}>"


def _money(amount_minor: int, currency: str) -> str:
    return f"{amount_minor // 100}.{amount_minor % 100:02d} {currency}"


def _short(order_id: str) -> str:
    return order_id[:8]


def welcome(event: user_events.UserRegistered) -> Draft:
    name = event.first_name or "there"
    return Draft(
        user_id=event.user_id,
        kind="welcome",
        title="Welcome to shopmesh",
        body=f"Hello {name}, your account is ready.",
        mail=MailDraft(
            subject="Welcome to shopmesh",
            body=f"Hello {name},\n\nyour shopmesh account for {event.email} is ready. Happy shopping!\n",
        ),
    )


def order_created(event: order_events.OrderCreated) -> Draft:
    return Draft(
        user_id=event.user_id,
        kind="order_created",
        title=f"Order {_short(event.order_id)} placed",
        body=f"We received your order of {_money(event.total_minor, event.currency)}; it awaits payment.",
        order_id=event.order_id,
    )


def order_confirmed(event: order_events.OrderConfirmed) -> Draft:
    title = f"Order {_short(event.order_id)} confirmed"
    body = "Your payment went through and your order is confirmed."
    return Draft(
        user_id=event.user_id,
        kind="order_confirmed",
        title=title,
        body=body,
        order_id=event.order_id,
        mail=MailDraft(subject=title, body=f"{body}\n\nOrder: {event.order_id}\n"),
    )


def order_cancelled(event: order_events.OrderCancelled) -> Draft:
    why = CANCELLATION_REASONS.get(event.reason, event.reason or "no reason was given")
    title = f"Order {_short(event.order_id)} cancelled"
    body = f"Your order was cancelled: {why}."
    if event.was_paid:
        body += " Your payment will be refunded."
    return Draft(
        user_id=event.user_id,
        kind="order_cancelled",
        title=title,
        body=body,
        order_id=event.order_id,
        reason=event.reason,
        mail=MailDraft(subject=title, body=f"{body}\n\nOrder: {event.order_id}\n"),
    )


def order_status_changed(event: order_events.OrderStatusChanged) -> Draft:
    short = _short(event.order_id)
    if event.status == orders.ORDER_STATUS_SHIPPED:
        kind, title, body = "order_shipped", f"Order {short} shipped", "Your order is on its way."
    elif event.status == orders.ORDER_STATUS_DELIVERED:
        kind, title, body = "order_delivered", f"Order {short} delivered", "Your order was delivered."
    else:
        status = orders.OrderStatus.Name(event.status).removeprefix("ORDER_STATUS_").lower()
        kind, title, body = "order_status_changed", f"Order {short} updated", f"Your order is now {status}."
    return Draft(user_id=event.user_id, kind=kind, title=title, body=body, order_id=event.order_id)


def payment_failed(event: payment_events.PaymentFailed) -> Draft:
    return Draft(
        user_id=event.user_id,
        kind="payment_failed",
        title=f"Payment for order {_short(event.order_id)} failed",
        body=f"Your payment did not go through ({event.reason or 'no reason given'}).",
        order_id=event.order_id,
        reason=event.reason,
    )


def payment_refunded(event: payment_events.PaymentRefunded) -> Draft:
    amount = _money(event.amount_minor, event.currency)
    title = f"Refund for order {_short(event.order_id)}"
    body = f"{amount} was refunded to your payment method."
    return Draft(
        user_id=event.user_id,
        kind="payment_refunded",
        title=title,
        body=body,
        order_id=event.order_id,
        mail=MailDraft(subject=title, body=f"{body}\n\nOrder: {event.order_id}\n"),
    )
