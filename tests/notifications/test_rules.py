"""The notifications service's pure rules: drafts from events, ids, page tokens, stream queues."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from shopmesh.order.v1 import events_pb2 as order_events
from shopmesh.order.v1 import order_service_pb2 as orders
from shopmesh.payment.v1 import events_pb2 as payment_events
from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_notifications import drafts, paging
from shopmesh_notifications.config import MailRetry
from shopmesh_notifications.hub import Subscription
from shopmesh_notifications.records import NotificationRecord
from shopmesh_platform.errors import InvalidArgument, ResourceExhausted, Unavailable

USER = str(uuid.uuid4())
ORDER = str(uuid.uuid4())


def test_ids_are_derived_from_the_event_id_only() -> None:
    event_id = str(uuid.uuid4())
    assert drafts.notification_id(event_id) == drafts.notification_id(event_id)
    assert drafts.notification_id(event_id) != drafts.notification_id(str(uuid.uuid4()))
    assert drafts.message_id(event_id) == f"<{event_id}@notifications.shopmesh>"


def test_mails_go_out_only_for_what_a_customer_expects_one_for() -> None:
    made = {
        "welcome": drafts.welcome(user_events.UserRegistered(user_id=USER, email="a@example.com", first_name="Ada")),
        "created": drafts.order_created(
            order_events.OrderCreated(order_id=ORDER, user_id=USER, total_minor=2999, currency="USD")
        ),
        "confirmed": drafts.order_confirmed(order_events.OrderConfirmed(order_id=ORDER, user_id=USER)),
        "cancelled": drafts.order_cancelled(
            order_events.OrderCancelled(order_id=ORDER, user_id=USER, reason="reservation_expired")
        ),
        "failed": drafts.payment_failed(
            payment_events.PaymentFailed(order_id=ORDER, user_id=USER, reason="card_declined")
        ),
        "refunded": drafts.payment_refunded(
            payment_events.PaymentRefunded(order_id=ORDER, user_id=USER, amount_minor=105, currency="EUR")
        ),
    }
    assert {name for name, draft in made.items() if draft.mail is not None} == {
        "welcome",
        "confirmed",
        "cancelled",
        "refunded",
    }
    assert "29.99 USD" in made["created"].body
    assert "1.05 EUR" in made["refunded"].body
    assert made["cancelled"].reason == "reservation_expired" and "not paid in time" in made["cancelled"].body
    assert made["failed"].reason == "card_declined"


def test_a_paid_cancelled_order_mentions_the_refund_and_an_admin_note_is_kept() -> None:
    draft = drafts.order_cancelled(
        order_events.OrderCancelled(order_id=ORDER, user_id=USER, reason="out of stock", was_paid=True)
    )
    assert "out of stock" in draft.body and "refunded" in draft.body


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (orders.ORDER_STATUS_SHIPPED, "order_shipped"),
        (orders.ORDER_STATUS_DELIVERED, "order_delivered"),
        (orders.ORDER_STATUS_CONFIRMED, "order_status_changed"),
    ],
)
def test_status_changes_name_shipping_and_delivery(status: int, kind: str) -> None:
    event = order_events.OrderStatusChanged(order_id=ORDER, user_id=USER, status=status)  # type: ignore[arg-type]
    assert drafts.order_status_changed(event).kind == kind


def test_page_tokens_round_trip_and_refuse_foreign_ones() -> None:
    cursor = paging.Cursor(dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC), str(uuid.uuid4()), True)
    assert paging.decode(paging.encode(cursor), True) == cursor
    assert paging.decode("", False) is None
    for bad in ("bogus", paging.encode(cursor)[:-3], "e30"):
        with pytest.raises(InvalidArgument):
            paging.decode(bad, True)
    with pytest.raises(InvalidArgument):
        paging.decode(paging.encode(cursor), False)  # listed with another filter


def test_mail_retries_back_off_up_to_the_maximum() -> None:
    retry = MailRetry(poll_seconds=1, initial_seconds=0.5, max_seconds=4)
    assert [retry.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def record(n: int) -> NotificationRecord:
    return NotificationRecord(str(n), USER, "welcome", "t", "b", "", "", dt.datetime.now(dt.UTC), None)


async def test_a_stream_that_falls_behind_is_closed_and_others_are_not_held_up() -> None:
    slow, fast = Subscription(USER, capacity=2), Subscription(USER, capacity=2)
    for n in range(3):
        arrived = record(n)
        slow.offer(arrived)
        fast.offer(arrived)
        assert (await fast.next(0.1)) == arrived
    with pytest.raises(ResourceExhausted):
        await slow.next(0.1)
    assert await fast.next(0.01) is None  # nothing more: a timeout, not an error


async def test_closing_a_subscription_wakes_its_reader() -> None:
    subscription = Subscription(USER, capacity=5)
    reader = asyncio.create_task(subscription.next(30))
    await asyncio.sleep(0)
    subscription.close(Unavailable("draining", reason="DRAINING"))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(reader, timeout=5)
