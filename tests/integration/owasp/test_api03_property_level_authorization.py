"""OWASP API3:2023 Broken Object Property Level Authorization.

What shopmesh does: request messages carry only what a client may set. Identity,
role, account status, email verification, order status, totals, owners and payment
outcomes are not fields of any request a customer can send, so a body that names
them (mass assignment) sets nothing: the edge's transcoder and the services'
protobuf decoding drop fields a message does not have, and where a request does
name an owner (`userId` of CreateOrder) the service checks it against the token.
Prices and totals come from the catalog, never from the client. Responses are
protobuf messages too, so what leaves a service is what the contract declares:
no password hash (argon2id, in the users database only), no Stripe ids, keys or
webhook secrets; a PaymentIntent's client secret goes only to the payer, in the
answer of their own CreatePayment when the card needs authentication.

What these tests prove: privileged fields in REST bodies (registration, profile
update, order, payment) and unknown fields in gRPC messages change nothing; the
response contracts have no field for a secret beyond a documented allow-list;
real answers never contain the stored password hash; and a payment's client
secret and Stripe ids reach nobody but its payer.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import asyncpg
import pytest

from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.grpc_inputs import VARINT, tag, varint
from tests.integration.helpers import http
from tests.integration.orders_client import cancel_order, get_order, order_body, post_order
from tests.integration.owasp.support import bearer, contract_fields, new_account
from tests.integration.payments_support import stripe_client
from tests.integration.users_client import PASSWORD, Account, call, unique_email

PRODUCT, PRICE = "prod-123", 29.99
# Response fields whose names look secret, and why each is allowed.
SECRET_LOOKING = re.compile(r"password|hash|secret|stripe|intent|api_key|private|token", re.IGNORECASE)
ALLOWED_SECRET_LOOKING = {
    # The caller's own new token: what registering and signing in are for.
    "shopmesh.user.v1.RegisterUserResponse.token",
    "shopmesh.user.v1.LoginResponse.token",
    # The lifetime of tokens, published with the public keys.
    "shopmesh.user.v1.GetJwksResponse.token_lifetime_seconds",
    # The payer's own PaymentIntent client secret, for Stripe.js to finish 3-D Secure.
    "shopmesh.payment.v1.CreatePaymentResponse.client_secret",
}
# Card numbers localstripe (like Stripe) answers with `requires_action` (3-D Secure).
AUTHENTICATION_CARD = "4000002760003184"


@pytest.fixture(scope="module")
def customer(stack: Stack) -> Account:
    return new_account(stack)


def test_privileged_fields_at_registration_are_not_taken(stack: Stack) -> None:
    email = unique_email("mass")
    body = {
        "email": email,
        "password": PASSWORD,
        "firstName": "Eve",
        "lastName": "Admin",
        "role": "ROLE_ADMIN",
        "accountStatus": "ACCOUNT_STATUS_ACTIVE",
        "emailVerified": True,
        "id": str(uuid.uuid4()),
    }
    reply = http(stack, "POST", "/api/v1/users/register", json.dumps(body))
    if reply.status != 200:
        assert reply.status == 400, reply.body  # refused outright is as good as ignored
        return
    user = reply.json()["user"]
    assert (user["role"], user["emailVerified"]) == ("ROLE_CUSTOMER", False)
    assert user["id"] != body["id"]
    account = Account(user["id"], user["email"], reply.json()["token"])
    # The token's role is the stored one: admin-only routes stay closed.
    assert call(stack, "POST", f"/api/v1/users/{account.id}:suspend", account, {"reason": "x"}).status == 403


def test_privileged_fields_in_a_profile_update_change_nothing(stack: Stack, customer: Account) -> None:
    path = f"/api/v1/users/{customer.id}"
    before = call(stack, "GET", path, customer).json()
    privileged = {
        "bio": "mass assignment",
        "role": "ROLE_ADMIN",
        "accountStatus": "ACCOUNT_STATUS_ACTIVE",
        "emailVerified": True,
        "email": unique_email("taken"),
        "createdAt": "2000-01-01T00:00:00Z",
        "passwordHash": "$argon2id$v=19$m=65536,t=3,p=4$AAAA$BBBB",
    }
    reply = call(stack, "PATCH", path, customer, privileged)
    assert reply.status in (200, 400), reply.body
    after = call(stack, "GET", path, customer).json()
    for field in ("role", "accountStatus", "emailVerified", "email", "createdAt", "id"):
        assert after[field] == before[field], field
    # The old password still signs in: no hash was set.
    login = call(stack, "POST", "/api/v1/users/login", body={"email": customer.email, "password": PASSWORD})
    assert login.status == 200


def test_unknown_fields_in_a_grpc_message_are_dropped(stack: Stack, customer: Account) -> None:
    """UpdateUserRequest with User's numbers for email_verified (10), account_status (11) and role (12) appended."""
    request = user_pb.UpdateUserRequest(id=customer.id, bio="grpc").SerializeToString()
    smuggled = b"".join(tag(number, VARINT) + varint(value) for number, value in ((10, 1), (11, 2), (12, 2)))
    with channel(stack.settings, "users") as chan:
        update = chan.unary_unary(
            "/shopmesh.user.v1.UserService/UpdateUser",
            request_serializer=None,
            response_deserializer=user_pb.User.FromString,
        )
        user = update(request + smuggled, metadata=bearer(customer.token), timeout=15)
    assert user.bio == "grpc"
    assert (user.role, user.account_status, user.email_verified) == (
        user_pb.ROLE_CUSTOMER,
        user_pb.ACCOUNT_STATUS_ACTIVE,
        False,
    )


def test_an_order_body_cannot_set_its_owner_status_or_prices(stack: Stack, customer: Account) -> None:
    stranger = new_account(stack)
    assert post_order(stack, customer, order_body(stranger, [(PRODUCT, 1, PRICE)])).status == 403
    body = order_body(
        customer,
        [(PRODUCT, 1, PRICE)],
        id=str(uuid.uuid4()),
        status="ORDER_STATUS_CONFIRMED",
        totalAmount=0.01,
        currency="XXX",
        cancellationReason="none",
    )
    reply = post_order(stack, customer, body)
    if reply.status != 200:
        assert reply.status == 400, reply.body
        return
    order = reply.json()
    try:
        assert order["id"] != body["id"]
        assert (order["status"], order["totalAmount"], order["currency"]) == ("ORDER_STATUS_PENDING", PRICE, "USD")
        assert get_order(stack, customer, order["id"]).json()["status"] == "ORDER_STATUS_PENDING"
    finally:
        assert cancel_order(stack, customer, order["id"]).status == 200
    # A price the client invents is refused, not charged.
    cheap = post_order(stack, customer, order_body(customer, [(PRODUCT, 1, 0.01)]))
    assert cheap.status == 400 and "price" in cheap.body.decode()


def test_a_payment_body_cannot_set_its_outcome_or_payer(stack: Stack, customer: Account) -> None:
    stranger = new_account(stack)
    placed = post_order(stack, customer, order_body(customer, [(PRODUCT, 1, PRICE)]))
    assert placed.status == 200, placed.body
    order = placed.json()
    body = {
        "orderId": order["id"],
        "amount": PRICE,
        "currency": "USD",
        "paymentMethodId": "pm_card_chargeCustomerFail",  # a card that is declined
        "status": "PAYMENT_STATUS_SUCCEEDED",
        "userId": stranger.id,
        "amountRefunded": PRICE,
    }
    reply = call(stack, "POST", "/api/v1/payments", customer, body)
    if reply.status == 400:
        return  # refused outright
    assert reply.status == 200, reply.body
    assert reply.json()["status"] == "PAYMENT_STATUS_FAILED"
    payment = call(stack, "GET", f"/api/v1/payments/{reply.json()['paymentId']}", customer).json()
    assert (payment["userId"], payment["amountRefunded"], payment["status"]) == (
        customer.id,
        0,
        "PAYMENT_STATUS_FAILED",
    )


def test_response_contracts_have_no_field_for_a_secret(stack: Stack) -> None:
    looking = {
        name
        for name in contract_fields(requests=False)
        # A listing's cursor is opaque to the client, and only pages the caller's own results.
        if SECRET_LOOKING.search(name.rsplit(".", 1)[1]) and not name.endswith(".next_page_token")
    }
    assert looking == ALLOWED_SECRET_LOOKING


async def stored_hash(stack: Stack, user_id: str) -> str:
    connection = await asyncpg.connect(stack.postgres.dsn("users"))
    try:
        value: str = await connection.fetchval("SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user_id))
    finally:
        await connection.close()
    return value


def test_answers_about_an_account_never_carry_its_password_hash(stack: Stack) -> None:
    email = unique_email("hash")
    registered = http(
        stack,
        "POST",
        "/api/v1/users/register",
        json.dumps({"email": email, "password": PASSWORD, "firstName": "A", "lastName": "B"}),
    )
    assert registered.status == 200
    account = Account(registered.json()["user"]["id"], email, registered.json()["token"])
    password_hash = asyncio.run(stored_hash(stack, account.id))
    assert password_hash.startswith("$argon2id$")
    answers = [
        registered,
        call(stack, "POST", "/api/v1/users/login", body={"email": email, "password": PASSWORD}),
        call(stack, "GET", "/api/v1/users/me", account),
        call(stack, "GET", f"/api/v1/users/{account.id}", account),
        call(stack, "PATCH", f"/api/v1/users/{account.id}", account, {"bio": "hello"}),
    ]
    for reply in answers:
        assert reply.status == 200, reply.body
        text = reply.body.decode()
        assert password_hash not in text and "argon2" not in text and PASSWORD not in text
        assert "password" not in text.lower()


def authentication_card(stack: Stack) -> str:
    """A localstripe payment method whose payments need 3-D Secure (requires_action)."""
    method = stripe_client(stack).v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": AUTHENTICATION_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return str(method.id)


def test_a_payments_client_secret_and_stripe_ids_reach_only_its_payer(stack: Stack, customer: Account) -> None:
    intruder = new_account(stack)
    placed = post_order(stack, customer, order_body(customer, [(PRODUCT, 1, PRICE)]))
    assert placed.status == 200, placed.body
    order = placed.json()
    try:
        body = {
            "orderId": order["id"],
            "amount": PRICE,
            "currency": "USD",
            "paymentMethodId": authentication_card(stack),
        }
        reply = call(stack, "POST", "/api/v1/payments", customer, body)
        assert reply.status == 200, reply.body
        answer = reply.json()
        assert answer["requiresAction"] is True and answer["clientSecret"], answer
        secret = answer["clientSecret"]
        intent_id = secret.split("_secret_")[0]
        assert intent_id.startswith("pi_")

        others = [
            call(stack, "GET", f"/api/v1/payments/{answer['paymentId']}", intruder),
            call(stack, "POST", "/api/v1/payments", intruder, body),
            call(stack, "GET", f"/api/v1/orders/{order['id']}", intruder),
        ]
        for other in others:
            assert other.status == 404, other.body
        own = [
            call(stack, "GET", f"/api/v1/payments/{answer['paymentId']}", customer),
            call(stack, "GET", f"/api/v1/orders/{order['id']}", customer),
        ]
        assert [reply.status for reply in own] == [200, 200]
        for reply in [*others, *own]:
            text = reply.body.decode()
            assert secret not in text and intent_id not in text
            assert "sk_" not in text and "whsec_" not in text
    finally:
        assert cancel_order(stack, customer, order["id"]).status == 200
