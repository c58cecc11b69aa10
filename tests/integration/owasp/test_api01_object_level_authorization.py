"""OWASP API1:2023 Broken Object Level Authorization.

What shopmesh does: every object a customer can name by id (an order, a payment,
a notification, an account) is looked up together with its owner, inside the
service that owns it, from the caller's verified token (never from a header or a
body field). Someone else's object answers exactly like one that does not exist,
NOT_FOUND (HTTP 404), so ids cannot be probed; listings are scoped to the caller
(naming another user is PERMISSION_DENIED, 403); a stream is the caller's own.
Admins may read and manage everything (the `admin` role of their token).

What these tests prove, for each resource, through the edge (REST) and directly on
the service (gRPC with the developer certificate and the intruder's token): another
customer can neither read, update nor cancel it; the refusal looks like an unknown
id; and the owner finds the object unchanged afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from shopmesh.notification.v1 import notification_service_pb2 as notification_pb
from shopmesh.notification.v1 import notification_service_pb2_grpc as notification_grpc
from shopmesh.order.v1 import order_service_pb2 as order_pb
from shopmesh.order.v1 import order_service_pb2_grpc as order_grpc
from shopmesh.payment.v1 import payment_service_pb2 as payment_pb
from shopmesh.payment.v1 import payment_service_pb2_grpc as payment_grpc
from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh.user.v1 import user_service_pb2_grpc as user_grpc
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.helpers import HttpReply
from tests.integration.orders_client import cancel_order, get_order, place
from tests.integration.owasp.support import bearer, direct, new_account
from tests.integration.payments_support import intents_for_order
from tests.integration.users_client import Account, call
from tests.polling import eventually

PRODUCT, PRICE = "prod-123", 29.99
PENDING = "ORDER_STATUS_PENDING"


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return new_account(stack)


@pytest.fixture(scope="module")
def intruder(stack: Stack) -> Account:
    return new_account(stack)


def same_answer(hidden: HttpReply, hidden_id: str, missing: HttpReply, missing_id: str) -> bool:
    """Someone else's object and an unknown id get the same status and body (ids aside)."""
    return hidden.status == missing.status and hidden.body.replace(hidden_id.encode(), b"ID") == missing.body.replace(
        missing_id.encode(), b"ID"
    )


def test_another_customers_order_cannot_be_read_listed_changed_or_cancelled(
    stack: Stack, owner: Account, intruder: Account
) -> None:
    order = place(stack, owner, [(PRODUCT, 1, PRICE)])
    try:
        path = f"/api/v1/orders/{order['id']}"
        unknown = str(uuid.uuid4())
        read = get_order(stack, intruder, order["id"])
        assert read.status == 404, read.body
        assert same_answer(read, order["id"], get_order(stack, intruder, unknown), unknown)
        assert cancel_order(stack, intruder, order["id"]).status == 404
        # Listing: naming the owner is refused; the intruder's own list does not show the order.
        assert call(stack, "GET", f"/api/v1/orders?userId={owner.id}", intruder).status == 403
        own = call(stack, "GET", "/api/v1/orders?pageSize=100", intruder)
        assert own.status == 200 and order["id"] not in own.body.decode()
        # Status changes are an admin's, whoever owns the order (API5 covers the role).
        changed = call(stack, "PATCH", f"{path}/status", intruder, {"status": "ORDER_STATUS_CANCELLED"})
        assert changed.status == 403, changed.body

        stub = order_grpc.OrderServiceStub
        token = intruder.token
        assert direct(stack, "orders", stub, "GetOrder", order_pb.GetOrderRequest(id=order["id"]), token=token)[0] == (
            grpc.StatusCode.NOT_FOUND
        )
        cancel = order_pb.CancelOrderRequest(id=order["id"], reason="mine now")
        assert direct(stack, "orders", stub, "CancelOrder", cancel, token=token)[0] == grpc.StatusCode.NOT_FOUND
        listing = order_pb.ListOrdersRequest(user_id=owner.id)
        assert direct(stack, "orders", stub, "ListOrders", listing, token=token)[0] == grpc.StatusCode.PERMISSION_DENIED

        after = get_order(stack, owner, order["id"])
        assert after.status == 200, after.body
        unchanged = ("status", "updatedAt", "items", "totalAmount", "userId")
        assert {k: after.json()[k] for k in unchanged} == {k: order[k] for k in unchanged}
        assert after.json()["status"] == PENDING
    finally:
        assert cancel_order(stack, owner, order["id"]).status == 200  # frees the owner's pending-order slot


def test_another_customers_payment_cannot_be_read_or_made(stack: Stack, owner: Account, intruder: Account) -> None:
    order = place(stack, owner, [(PRODUCT, 1, PRICE)])
    body = {"orderId": order["id"], "amount": PRICE, "currency": "USD", "paymentMethodId": "pm_card_visa"}
    # Paying for someone else's order is refused before Stripe is asked for anything.
    assert call(stack, "POST", "/api/v1/payments", intruder, body).status == 404
    assert intents_for_order(stack, order["id"]) == []
    paid = call(stack, "POST", "/api/v1/payments", owner, body)
    assert paid.status == 200, paid.body
    payment_id = paid.json()["paymentId"]
    before = call(stack, "GET", f"/api/v1/payments/{payment_id}", owner)
    assert before.status == 200, before.body

    unknown = str(uuid.uuid4())
    hidden = call(stack, "GET", f"/api/v1/payments/{payment_id}", intruder)
    assert hidden.status == 404
    assert same_answer(hidden, payment_id, call(stack, "GET", f"/api/v1/payments/{unknown}", intruder), unknown)
    stub = payment_grpc.PaymentServiceStub
    request = payment_pb.GetPaymentRequest(id=payment_id)
    assert direct(stack, "payments", stub, "GetPayment", request, token=intruder.token)[0] == grpc.StatusCode.NOT_FOUND
    again = payment_pb.CreatePaymentRequest(
        order_id=order["id"], amount=PRICE, currency="USD", payment_method_id="pm_card_visa"
    )
    assert direct(stack, "payments", stub, "CreatePayment", again, token=intruder.token)[0] == grpc.StatusCode.NOT_FOUND

    assert len(intents_for_order(stack, order["id"])) == 1
    after = call(stack, "GET", f"/api/v1/payments/{payment_id}", owner)
    assert after.json()["status"] == before.json()["status"]
    assert after.json()["amountRefunded"] == 0


async def welcome_of(stack: Stack, account: Account) -> dict[str, Any]:
    """The account's welcome notification, once notifications has consumed its registration."""

    async def feed() -> list[dict[str, Any]]:
        reply = await asyncio.to_thread(call, stack, "GET", "/api/v1/notifications?pageSize=100", account)
        assert reply.status == 200, reply.body
        notifications: list[dict[str, Any]] = reply.json()["notifications"]
        return notifications

    found = await eventually(feed, bool, timeout=60, interval=0.2)
    return found[-1]


async def test_another_users_notifications_cannot_be_read_marked_or_watched(
    stack: Stack, owner: Account, intruder: Account
) -> None:
    welcome = await welcome_of(stack, owner)
    assert not welcome.get("readAt"), welcome
    unknown = str(uuid.uuid4())
    marked = call(stack, "POST", f"/api/v1/notifications/{welcome['id']}:markRead", intruder, {})
    assert marked.status == 404, marked.body
    missing = call(stack, "POST", f"/api/v1/notifications/{unknown}:markRead", intruder, {})
    assert same_answer(marked, welcome["id"], missing, unknown)
    theirs = call(stack, "GET", "/api/v1/notifications?pageSize=100", intruder)
    assert theirs.status == 200 and welcome["id"] not in theirs.body.decode()

    stub = notification_grpc.NotificationServiceStub
    mark = notification_pb.MarkNotificationReadRequest(id=welcome["id"])
    assert direct(stack, "notifications", stub, "MarkNotificationRead", mark, token=intruder.token)[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    with channel(stack.settings, "notifications") as chan:
        stream = stub(chan).WatchNotifications(
            notification_pb.WatchNotificationsRequest(user_id=owner.id), metadata=bearer(intruder.token), timeout=15
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    still = call(stack, "GET", "/api/v1/notifications?unreadOnly=true&pageSize=100", owner)
    assert welcome["id"] in [n["id"] for n in still.json()["notifications"]]


def test_another_users_account_cannot_be_read_or_updated(stack: Stack, owner: Account, intruder: Account) -> None:
    path = f"/api/v1/users/{owner.id}"
    before = call(stack, "GET", path, owner).json()
    unknown = str(uuid.uuid4())
    read = call(stack, "GET", path, intruder)
    assert read.status == 404
    assert same_answer(read, owner.id, call(stack, "GET", f"/api/v1/users/{unknown}", intruder), unknown)
    update = call(stack, "PATCH", path, intruder, {"firstName": "Mallory", "bio": "owned"})
    assert update.status == 404, update.body
    assert owner.email.encode() not in update.body

    stub = user_grpc.UserServiceStub
    get = user_pb.GetUserRequest(id=owner.id)
    assert direct(stack, "users", stub, "GetUser", get, token=intruder.token)[0] == grpc.StatusCode.NOT_FOUND
    change = user_pb.UpdateUserRequest(id=owner.id, first_name="Mallory")
    assert direct(stack, "users", stub, "UpdateUser", change, token=intruder.token)[0] == grpc.StatusCode.NOT_FOUND

    assert call(stack, "GET", path, owner).json() == before
