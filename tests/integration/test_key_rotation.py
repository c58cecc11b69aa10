"""Signing-key rotation end to end, as the README describes it: a new key in the key
directory, marked as the signing one, and a restart of users; later the old file
removed and users restarted again.

The edge refetches the JWKS (its cache lasts TEST_JWKS_REFRESH_SECONDS), the
services refetch it on an unknown `kid` and every refresh period, tokens of the
previous key are accepted until it is retired, and refused everywhere within
one refresh period after.
"""

from __future__ import annotations

import grpc
import jwt
from google.protobuf.message import Message

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb
from shopmesh.notification.v1 import notification_service_pb2 as notification_pb
from shopmesh.order.v1 import order_service_pb2 as order_pb
from shopmesh.payment.v1 import payment_service_pb2 as payment_pb
from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from shopmesh_users.keys import SIGNING_MARKER, mark_signing, write_new_key
from tests.declared import SERVICES
from tests.integration.conftest import TEST_JWKS_REFRESH_SECONDS
from tests.integration.helpers import http
from tests.integration.users_client import PASSWORD, register
from tests.polling import wait_for

# A `user` method of every service and a request for it. Their auth interceptor
# decides before anything else, so any answer but UNAUTHENTICATED means the token passed.
USER_METHODS: dict[str, tuple[str, Message]] = {
    "users": ("/shopmesh.user.v1.UserService/GetMe", user_pb.GetMeRequest()),
    "orders": ("/shopmesh.order.v1.OrderService/ListOrders", order_pb.ListOrdersRequest()),
    "payments": (
        "/shopmesh.payment.v1.PaymentService/GetPayment",
        payment_pb.GetPaymentRequest(id="00000000-0000-4000-8000-000000000000"),
    ),
    "inventory": ("/shopmesh.inventory.v1.InventoryService/CreateProduct", inventory_pb.CreateProductRequest()),
    "notifications": (
        "/shopmesh.notification.v1.NotificationService/ListNotifications",
        notification_pb.ListNotificationsRequest(),
    ),
}
# Slack for a slow, shared machine on top of the refresh period itself.
DEADLINE = TEST_JWKS_REFRESH_SECONDS + 25


def service_verdict(stack: Stack, service: str, token: str) -> grpc.StatusCode:
    path, request = USER_METHODS[service]
    with channel(stack.settings, service) as chan:
        method = chan.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            method(request.SerializeToString(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def refused_by(stack: Stack, token: str) -> set[str]:
    """The services (and "edge") that answer UNAUTHENTICATED / 401 to the token."""
    refusing = {s for s in SERVICES if service_verdict(stack, s, token) == grpc.StatusCode.UNAUTHENTICATED}
    if http(stack, "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status == 401:
        refusing.add("edge")
    return refusing


def login(stack: Stack, email: str) -> str:
    reply = http(stack, "POST", "/api/v1/users/login", f'{{"email": "{email}", "password": "{PASSWORD}"}}')
    assert reply.status == 200, reply.body
    return str(reply.json()["token"])


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def restart_users(stack: Stack) -> None:
    users = stack.services["users"]
    stack.stop(users)
    stack.start(users)


def test_rotating_the_signing_key_end_to_end(stack: Stack) -> None:
    key_dir = stack.settings.data_dir / "users" / "jwt-keys"
    account = register(stack)
    old_token = account.token
    old_kid = kid_of(old_token)
    assert refused_by(stack, old_token) == set()

    # Rotate: a new key that signs from the next start; the old one is still published.
    added = write_new_key(key_dir)
    mark_signing(key_dir, f"{added.kid}.pem")
    restart_users(stack)
    new_token = login(stack, account.email)
    assert kid_of(new_token) == added.kid
    # The services fetch the new key on its unknown kid, the edge within its cache period.
    wait_for(
        lambda: refused_by(stack, new_token) == set(), DEADLINE, "every service and the edge accepting the new key"
    )
    assert refused_by(stack, old_token) == set(), "the previous key's tokens stay valid until it is retired"

    # Retire the old key.
    (key_dir / f"{old_kid}.pem").unlink()
    restart_users(stack)
    everyone = {*SERVICES, "edge"}
    wait_for(lambda: refused_by(stack, old_token) == everyone, DEADLINE, "everyone refusing the retired key")
    assert refused_by(stack, new_token) == set()
    assert (key_dir / SIGNING_MARKER).read_text().strip() == f"{added.kid}.pem"
