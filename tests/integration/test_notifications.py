"""Notifications on the real stack: the feed, the live stream across replicas, and the mails.

Orders and payments do not publish yet, so their events are produced here on
the real topics with the platform's envelope: the service's real consumer path
(group consumer, inbox, handlers) applies them. UserRegistered comes from the
real users service. The end-to-end checkout version waits in
pending_checkout_notifications.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial

import grpc
import pytest
from grpc import aio

from shopmesh.notification.v1 import notification_service_pb2 as pb
from shopmesh.order.v1 import events_pb2 as order_events
from shopmesh.order.v1 import order_service_pb2 as orders
from shopmesh.payment.v1 import events_pb2 as payment_events
from shopmesh_platform.events.topics import ORDER_EVENTS, PAYMENT_EVENTS
from shopmesh_stack.stack import Stack
from tests.integration.notifications_support import (
    channel_to,
    edge_grpc_channel,
    fetch,
    mails_to,
    message_id,
    open_streams,
    publish,
    second_replica,
    watch,
)
from tests.integration.users_client import Account, call, register
from tests.polling import eventually, wait_for

FEED = "/api/v1/notifications"


async def streams_open(metrics_port: int) -> float:
    return await asyncio.to_thread(open_streams, metrics_port)


async def until_subscribed(metrics_port: int, before: float) -> None:
    """Until one more stream's subscription is in place on that replica (polled without blocking the streams)."""
    await eventually(partial(streams_open, metrics_port), lambda count: count > before, timeout=30, interval=0.1)


async def feed_kinds(stack: Stack, account: Account, query: str = "") -> list[str]:
    reply = call(stack, "GET", f"{FEED}{query}", account)
    assert reply.status == 200, reply.body
    return [n["kind"] for n in reply.json()["notifications"]]


async def until_feed_has(stack: Stack, account: Account, count: int) -> list[dict[str, object]]:
    async def probe() -> list[dict[str, object]]:
        reply = call(stack, "GET", f"{FEED}?pageSize=100", account)
        assert reply.status == 200, reply.body
        notifications: list[dict[str, object]] = reply.json()["notifications"]
        return notifications

    return await eventually(probe, lambda found: len(found) >= count, timeout=60, interval=0.2)


def confirmed(account: Account, order_id: str) -> order_events.OrderConfirmed:
    return order_events.OrderConfirmed(order_id=order_id, user_id=account.id, payment_id=str(uuid.uuid4()))


async def test_the_customer_journey_gives_one_notification_per_event_even_when_published_twice(stack: Stack) -> None:
    account = register(stack)
    order_id = str(uuid.uuid4())
    journey = [
        (
            ORDER_EVENTS,
            order_events.OrderCreated(order_id=order_id, user_id=account.id, total_minor=5998, currency="USD"),
        ),
        (ORDER_EVENTS, confirmed(account, order_id)),
        (
            ORDER_EVENTS,
            order_events.OrderStatusChanged(order_id=order_id, user_id=account.id, status=orders.ORDER_STATUS_SHIPPED),
        ),
        (
            ORDER_EVENTS,
            order_events.OrderStatusChanged(
                order_id=order_id, user_id=account.id, status=orders.ORDER_STATUS_DELIVERED
            ),
        ),
        (PAYMENT_EVENTS, payment_events.PaymentFailed(order_id=order_id, user_id=account.id, reason="card_declined")),
        (
            ORDER_EVENTS,
            order_events.OrderCancelled(order_id=order_id, user_id=account.id, reason="payment_failed", was_paid=True),
        ),
        (
            PAYMENT_EVENTS,
            payment_events.PaymentRefunded(order_id=order_id, user_id=account.id, amount_minor=5998, currency="USD"),
        ),
    ]
    event_ids = [str(uuid.uuid4()) for _ in journey]
    for (topic, event), event_id in zip(journey, event_ids, strict=True):
        # Every event twice: the second delivery must change nothing.
        await publish(stack, topic, order_id, event, event_id=event_id, times=2)
    # A marker after the duplicates, on the same partitions: once it is applied, so are they.
    markers = [str(uuid.uuid4()), str(uuid.uuid4())]
    await publish(stack, ORDER_EVENTS, order_id, confirmed(account, str(uuid.uuid4())), event_id=markers[0])
    await publish(
        stack,
        PAYMENT_EVENTS,
        order_id,
        payment_events.PaymentFailed(order_id=order_id, user_id=account.id, reason="marker"),
        event_id=markers[1],
    )
    await until_feed_has(stack, account, 1 + len(journey) + 2)

    rows = await fetch(
        stack, "SELECT source_event_id, kind, reason FROM notifications WHERE user_id = $1", uuid.UUID(account.id)
    )
    by_event = {str(row["source_event_id"]): (row["kind"], row["reason"]) for row in rows}
    assert len(rows) == 1 + len(journey) + 2  # the welcome, the journey once each, the markers
    assert [by_event[e][0] for e in event_ids] == [
        "order_created",
        "order_confirmed",
        "order_shipped",
        "order_delivered",
        "payment_failed",
        "order_cancelled",
        "payment_refunded",
    ]
    assert by_event[event_ids[5]] == ("order_cancelled", "payment_failed")
    feed = call(stack, "GET", f"{FEED}?pageSize=100", account).json()["notifications"]
    cancelled = next(n for n in feed if n["kind"] == "NOTIFICATION_KIND_ORDER_CANCELLED")
    assert cancelled["reason"] == "payment_failed" and "refunded" in cancelled["body"]

    # Mails: welcome, confirmed (journey and marker), cancelled, refund; one per event, ids from the events.
    expected = {message_id(event_ids[i]) for i in (1, 5, 6)} | {message_id(markers[0])}

    def mailed() -> set[str]:
        return {m["MessageID"] for m in mails_to(stack, account.email)}

    wait_for(lambda: expected <= mailed(), 60, "the mails in Mailpit")
    mails = mails_to(stack, account.email)
    assert len(mails) == len({m["MessageID"] for m in mails}) == len(expected) + 1  # + the welcome
    welcome = next(m for m in mails if m["MessageID"] not in expected)
    assert welcome["Subject"] == "Welcome to shopmesh"
    sent = await fetch(
        stack,
        "SELECT count(*) AS n FROM outgoing_mails WHERE user_id = $1 AND sent_at IS NOT NULL",
        uuid.UUID(account.id),
    )
    assert sent[0]["n"] == len(expected) + 1


async def test_the_feed_is_own_newest_first_paginated_and_filters_unread(stack: Stack) -> None:
    account, other = register(stack), register(stack)
    order_id = str(uuid.uuid4())
    for status in (orders.ORDER_STATUS_SHIPPED, orders.ORDER_STATUS_DELIVERED):
        event = order_events.OrderStatusChanged(order_id=order_id, user_id=account.id, status=status)
        await publish(stack, ORDER_EVENTS, order_id, event, event_id=str(uuid.uuid4()))
    await until_feed_has(stack, account, 3)

    first = call(stack, "GET", f"{FEED}?pageSize=2", account).json()
    assert [n["kind"] for n in first["notifications"]] == [
        "NOTIFICATION_KIND_ORDER_DELIVERED",
        "NOTIFICATION_KIND_ORDER_SHIPPED",
    ]
    assert all(n["userId"] == account.id for n in first["notifications"])
    second = call(stack, "GET", f"{FEED}?pageSize=2&pageToken={first['nextPageToken']}", account).json()
    assert [n["kind"] for n in second["notifications"]] == ["NOTIFICATION_KIND_WELCOME"]
    assert second["nextPageToken"] == ""
    assert call(stack, "GET", f"{FEED}?pageToken=bogus", account).status == 400
    assert (
        call(stack, "GET", f"{FEED}?pageSize=2&unreadOnly=true&pageToken={first['nextPageToken']}", account).status
        == 400
    )

    newest = first["notifications"][0]["id"]
    marked = call(stack, "POST", f"{FEED}/{newest}:markRead", account, {})
    assert marked.status == 200 and marked.json()["readAt"]
    again = call(stack, "POST", f"{FEED}/{newest}:markRead", account, {})
    assert again.json()["readAt"] == marked.json()["readAt"]  # idempotent: the first time stays
    assert await feed_kinds(stack, account, "?unreadOnly=true") == [
        "NOTIFICATION_KIND_ORDER_SHIPPED",
        "NOTIFICATION_KIND_WELCOME",
    ]
    # Someone else's is not found (like a missing one); a malformed id is a bad request.
    assert call(stack, "POST", f"{FEED}/{first['notifications'][1]['id']}:markRead", other, {}).status == 404
    assert call(stack, "POST", f"{FEED}/{uuid.uuid4()}:markRead", account, {}).status == 404
    assert call(stack, "POST", f"{FEED}/not-a-uuid:markRead", account, {}).status == 400
    assert call(stack, "GET", FEED).status == 401
    await until_feed_has(stack, other, 1)  # the other account's welcome is consumed on its own time
    assert await feed_kinds(stack, other) == ["NOTIFICATION_KIND_WELCOME"]


async def test_a_stream_on_one_replica_gets_what_another_replica_stored_within_a_second(stack: Stack) -> None:
    account = register(stack)
    await until_feed_has(stack, account, 1)
    main = stack.services["notifications"]
    with second_replica(stack) as replica:
        async with channel_to(stack) as to_main, channel_to(stack, replica.port) as to_replica:
            # One stream on each replica: whichever consumes the event, the other one relays it.
            ports = (stack.settings.ports.metrics("notifications"), replica.settings.ports.metrics("notifications"))
            before = [await streams_open(port) for port in ports]
            streams = [watch(to_main, account.token), watch(to_replica, account.token)]
            for port, count in zip(ports, before, strict=True):
                await until_subscribed(port, count)
            order_id = str(uuid.uuid4())
            event_id = str(uuid.uuid4())
            # No occurred_at: the notification's created_at is when it was stored.
            await publish(stack, ORDER_EVENTS, order_id, confirmed(account, order_id), event_id=event_id)
            received = await asyncio.wait_for(asyncio.gather(*(s.read() for s in streams)), timeout=60)
            arrived = time.time()
            for notification in received:
                assert isinstance(notification, pb.Notification)
                assert notification.kind == pb.NOTIFICATION_KIND_ORDER_CONFIRMED
                assert notification.order_id == order_id
                assert arrived - notification.created_at.ToSeconds() - notification.created_at.nanos / 1e9 < 1.0
            for stream in streams:
                stream.cancel()
    assert main.process.running()


async def test_a_stream_is_refused_without_a_token_or_for_someone_else_and_closed_when_revoked(stack: Stack) -> None:
    account, other = register(stack), register(stack)
    async with channel_to(stack) as channel:
        with pytest.raises(aio.AioRpcError) as caught:
            await watch(channel, None).read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(aio.AioRpcError) as caught:
            await watch(channel, account.token, user_id=other.id).read()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(aio.AioRpcError) as caught:
            await watch(channel, account.token, user_id="not-a-uuid").read()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        await until_feed_has(stack, account, 1)  # the welcome is in: only the revocation can end the stream
        before = await streams_open(stack.settings.ports.metrics("notifications"))
        stream = watch(channel, account.token, user_id=account.id)
        await until_subscribed(stack.settings.ports.metrics("notifications"), before)
        assert call(stack, "POST", "/api/v1/users/logout", account, {}).status == 200
        with pytest.raises(aio.AioRpcError) as caught:
            await asyncio.wait_for(stream.read(), timeout=60)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (caught.value.details() or "")


async def test_a_stream_through_the_edge_receives_notifications(stack: Stack) -> None:
    account = register(stack)
    await until_feed_has(stack, account, 1)  # the welcome is in: the stream must not see it
    channel = edge_grpc_channel(stack)
    try:
        before = await streams_open(stack.settings.ports.metrics("notifications"))
        stream = watch(channel, account.token)
        await until_subscribed(stack.settings.ports.metrics("notifications"), before)
        order_id = str(uuid.uuid4())
        await publish(stack, ORDER_EVENTS, order_id, confirmed(account, order_id), event_id=str(uuid.uuid4()))
        notification = await asyncio.wait_for(stream.read(), timeout=60)
        assert isinstance(notification, pb.Notification) and notification.order_id == order_id
        stream.cancel()
        with pytest.raises(aio.AioRpcError) as caught:
            await watch(channel, None).read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close()


async def test_an_address_never_seen_is_asked_of_the_users_service(stack: Stack) -> None:
    account = register(stack)
    await until_feed_has(stack, account, 1)
    # As if its UserRegistered had aged out of the topic before notifications read it.
    await fetch(stack, "DELETE FROM user_contacts WHERE user_id = $1", uuid.UUID(account.id))
    order_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    await publish(stack, ORDER_EVENTS, order_id, confirmed(account, order_id), event_id=event_id)
    wait_for(lambda: message_id(event_id) in {m["MessageID"] for m in mails_to(stack, account.email)}, 60, "the mail")


@pytest.mark.stops_components
async def test_mails_queued_while_mailpit_is_down_arrive_once_it_is_back(stack: Stack) -> None:
    account = register(stack)
    wait_for(lambda: len(mails_to(stack, account.email)) == 1, 60, "the welcome mail")
    stack.stop(stack.mailpit)
    try:
        event_ids = [str(uuid.uuid4()) for _ in range(3)]
        for event_id in event_ids:
            order_id = str(uuid.uuid4())
            await publish(stack, ORDER_EVENTS, order_id, confirmed(account, order_id), event_id=event_id)

        async def retried() -> list[int]:
            rows = await fetch(
                stack,
                "SELECT attempts FROM outgoing_mails WHERE user_id = $1 AND sent_at IS NULL",
                uuid.UUID(account.id),
            )
            return [row["attempts"] for row in rows]

        # Every mail tried and failed (at least twice: retried with backoff), none given up.
        await eventually(retried, lambda attempts: len(attempts) == 3 and min(attempts) >= 2, timeout=60, interval=0.2)
        failed = await fetch(
            stack,
            "SELECT count(*) AS n FROM outgoing_mails WHERE failed_at IS NOT NULL AND user_id = $1",
            uuid.UUID(account.id),
        )
        assert failed[0]["n"] == 0
    finally:
        stack.start(stack.mailpit)
    expected = {message_id(e) for e in event_ids}
    wait_for(lambda: expected <= {m["MessageID"] for m in mails_to(stack, account.email)}, 60, "the queued mails")
    mails = mails_to(stack, account.email)
    assert len(mails) == 4 and len({m["MessageID"] for m in mails}) == 4  # the welcome from before, kept on disk
