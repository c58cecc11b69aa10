"""OWASP API4:2023 Unrestricted Resource Consumption.

What shopmesh does: every listing pages (`page_size` at most 100, default 20;
page tokens at most 512 characters), every string and list field of a request
has a declared bound (an order has 1 to 50 lines of 1 to 1000 units), and the
rules are checked by the platform's validation interceptor before a handler runs.
The edge refuses bodies over 1 MiB (413) before transcoding them, services refuse
gRPC messages over SHOPMESH_MAX_MESSAGE_BYTES (4 MiB), and the edge gives every
client budgets per minute and per hour (per token subject on `user` routes, per
client address on anonymous ones; 429 RESOURCE_EXHAUSTED beyond). Live streams are
bounded too: a user holds at most SHOPMESH_NOTIFICATIONS_MAX_STREAMS_PER_USER (5)
notification streams on a replica, each with a bounded queue.

What these tests prove: every string and list field of the request contracts is
bounded; page sizes over the cap are refused on every listing of the contracts
(REST and gRPC), oversized orders are refused, bodies over the
limit are 413 at the edge and messages over it RESOURCE_EXHAUSTED at a service,
budgets refuse a subject's and an address's calls once spent while other clients
still pass, and one user cannot open more notification streams than the cap.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from buf.validate import validate_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from grpc import aio

from shopmesh.common.v1.validation_pb2 import currency_code
from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh.notification.v1 import notification_service_pb2 as notification_pb
from shopmesh.order.v1 import order_service_pb2 as order_pb
from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh_edge.policy import load_edge_policy
from shopmesh_notifications.config import NotificationsConfig
from shopmesh_platform.config import PlatformConfig
from shopmesh_stack.channels import channel
from shopmesh_stack.components import Edge
from shopmesh_stack.stack import Stack
from tests.integration.helpers import http
from tests.integration.notifications_support import channel_to, open_streams, watch
from tests.integration.orders_client import order_body, post_order
from tests.integration.owasp.conftest import BUDGET
from tests.integration.owasp.support import contract_fields, contract_messages, direct, lower, new_account, request_from
from tests.integration.users_client import PASSWORD, Account, call
from tests.polling import eventually

# The listings of the contracts and where REST reaches them.
LISTINGS = {
    inventory_pb.ListProductsRequest.DESCRIPTOR.full_name: "/api/v1/products",
    order_pb.ListOrdersRequest.DESCRIPTOR.full_name: "/api/v1/orders",
    notification_pb.ListNotificationsRequest.DESCRIPTOR.full_name: "/api/v1/notifications",
}
MAX_PAGE_SIZE = 100


@pytest.fixture(scope="module")
def customer(stack: Stack) -> Account:
    return new_account(stack)


def test_every_listing_caps_its_page_size(stack: Stack, customer: Account) -> None:
    paged = {
        name for name, message in contract_messages(requests=True).items() if "page_size" in message.fields_by_name
    }
    assert paged == set(LISTINGS), "a listing without a page-size test"
    for path in LISTINGS.values():
        at_cap = call(stack, "GET", f"{path}?pageSize={MAX_PAGE_SIZE}", customer)
        assert at_cap.status == 200, (path, at_cap.body)
        over = call(stack, "GET", f"{path}?pageSize={MAX_PAGE_SIZE + 1}", customer)
        assert over.status == 400, (path, over.body)
        assert "page_size" in over.body.decode(), path
        long_token = call(stack, "GET", f"{path}?pageToken={'x' * 513}", customer)
        assert long_token.status == 400, path
    # Without a page size the catalog (24 demo products and more) comes 20 at a time.
    default = http(stack, "GET", "/api/v1/products").json()
    assert len(default["products"]) == 20 and default["nextPageToken"]
    request = inventory_pb.ListProductsRequest(page_size=10_000)
    code, _ = direct(stack, "inventory", inventory_grpc.InventoryServiceStub, "ListProducts", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def field_rules(field: FieldDescriptor) -> validate_pb2.FieldRules:
    options = descriptor_pb2.FieldOptions.FromString(field.GetOptions().SerializeToString())
    found = [value for option, value in options.ListFields() if option.full_name == validate_pb2.field.full_name]
    return found[0] if found else validate_pb2.FieldRules()


def is_bounded(field: FieldDescriptor) -> bool:
    """Whether the field's rules bound its size: a length, a UUID, a fully anchored pattern, a
    bounded predefined rule (a currency code is three letters), or for a list its number of items."""
    rules = field_rules(field)
    if field.is_repeated:
        return rules.repeated.HasField("max_items")
    text = rules.string
    fixed_size = text.uuid or (text.HasField("pattern") and text.pattern.endswith("$"))
    return text.HasField("max_len") or text.HasField("len") or fixed_size or text.Extensions[currency_code]


def test_every_string_and_list_a_client_sends_is_bounded() -> None:
    """google.api.HttpBody (the webhook's raw body) is bounded by the edge's body limit instead."""
    unbounded = [
        name
        for name, field in contract_fields(requests=True).items()
        if name.startswith("shopmesh.")
        and (field.is_repeated or field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES))
        and not is_bounded(field)
    ]
    assert unbounded == []


def test_an_order_is_bounded_in_lines_and_units(stack: Stack, customer: Account) -> None:
    too_many_lines = order_body(customer, [(f"prod-bulk-{n}", 1, 1.0) for n in range(51)])
    reply = post_order(stack, customer, too_many_lines)
    assert reply.status == 400 and "items" in reply.body.decode(), reply.body
    too_many_units = post_order(stack, customer, order_body(customer, [("prod-123", 1001, 29.99)]))
    assert too_many_units.status == 400 and "quantity" in too_many_units.body.decode(), too_many_units.body


def test_bodies_over_the_limit_are_refused_before_they_are_read(stack: Stack) -> None:
    limit = load_edge_policy().max_request_bytes
    frame = json.dumps({"email": "big@example.com", "password": ""})
    body = json.dumps({"email": "big@example.com", "password": "x" * (limit + 1 - len(frame))})
    over = http(stack, "POST", "/api/v1/users/login", body)
    assert over.status == 413, over.body[:200]
    assert over.json() == {"code": 8, "message": "request body too large"}


def test_messages_over_the_limit_are_refused_by_a_service(stack: Stack) -> None:
    limits = PlatformConfig.from_env(
        "users", {"SHOPMESH_GRPC_PORT": "0", "SHOPMESH_METRICS_PORT": "0", "MESH_TLS": "off"}
    ).limits
    huge = user_pb.LoginRequest(email="big@example.com", password="x" * (limits.max_message_bytes + 1))
    with channel(stack.settings, "users") as chan:
        login = chan.unary_unary(
            "/shopmesh.user.v1.UserService/Login",
            request_serializer=user_pb.LoginRequest.SerializeToString,
            response_deserializer=user_pb.LoginResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            login(huge, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_subjects_budget_is_spent_and_others_still_pass(stack: Stack, budget_edge: Edge) -> None:
    spender, other = new_account(stack), new_account(stack)
    replies = [
        request_from(budget_edge.port, "127.0.0.71", "GET", "/api/v1/users/me", account=spender) for _ in range(BUDGET)
    ]
    assert [reply.status for reply in replies] == [200] * BUDGET
    # Another address does not help: the budget is the token subject's.
    refused = request_from(budget_edge.port, "127.0.0.72", "GET", "/api/v1/users/me", account=spender)
    assert refused.status == 429, refused.body
    assert refused.json()["code"] == 8
    assert lower(refused.headers)["x-ratelimit-limit"] == str(BUDGET)
    assert request_from(budget_edge.port, "127.0.0.71", "GET", "/api/v1/users/me", account=other).status == 200


def test_an_addresss_budget_for_anonymous_calls_is_spent_and_others_still_pass(stack: Stack, budget_edge: Edge) -> None:
    spender, other = "127.0.0.73", "127.0.0.74"
    replies = [request_from(budget_edge.port, spender, "GET", "/api/v1/products?pageSize=1") for _ in range(BUDGET)]
    assert [reply.status for reply in replies] == [200] * BUDGET
    refused = request_from(budget_edge.port, spender, "GET", "/api/v1/products?pageSize=1")
    assert refused.status == 429, refused.body
    assert request_from(budget_edge.port, other, "GET", "/api/v1/products?pageSize=1").status == 200


async def opened(stack: Stack, call: aio.UnaryStreamCall, before: float) -> grpc.StatusCode | str:
    """'open' once the stream's subscription counts on the replica, else the status it was refused with."""
    port = stack.settings.ports.metrics("notifications")

    async def state() -> grpc.StatusCode | str | None:
        if call.done():
            return await call.code()
        return "open" if await asyncio.to_thread(open_streams, port) > before else None

    outcome = await eventually(state, lambda found: found is not None, timeout=30, interval=0.1)
    assert outcome is not None
    return outcome


async def test_one_user_cannot_open_more_streams_than_the_cap(stack: Stack) -> None:
    cap = NotificationsConfig.from_env({}).stream.max_per_user
    port = stack.settings.ports.metrics("notifications")
    hoarder, other = await asyncio.to_thread(new_account, stack), await asyncio.to_thread(new_account, stack)
    held: list[aio.UnaryStreamCall] = []
    async with channel_to(stack) as chan:
        try:
            for _ in range(cap):
                before = await asyncio.to_thread(open_streams, port)
                held.append(watch(chan, hoarder.token))
                assert await opened(stack, held[-1], before) == "open"
            one_more = watch(chan, hoarder.token)
            with pytest.raises(aio.AioRpcError) as refused:
                await asyncio.wait_for(one_more.read(), timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "streams" in (refused.value.details() or "")
            assert not [stream for stream in held if stream.done()]  # the open ones are untouched
            # The cap is per user: someone else still gets a stream.
            before = await asyncio.to_thread(open_streams, port)
            held.append(watch(chan, other.token))
            assert await opened(stack, held[-1], before) == "open"
            # Once one of the hoarder's streams has ended, the hoarder may open another.
            count = await asyncio.to_thread(open_streams, port)
            held.pop(0).cancel()
            await eventually(
                lambda: asyncio.to_thread(open_streams, port), lambda now: now < count, timeout=30, interval=0.1
            )
            before = await asyncio.to_thread(open_streams, port)
            held.append(watch(chan, hoarder.token))
            assert await opened(stack, held[-1], before) == "open"
        finally:
            for stream in held:
                stream.cancel()


def test_passwords_are_bounded_before_they_are_hashed(stack: Stack) -> None:
    """Passwords are bounded (128 characters) before the costly argon2id hash runs."""
    account = new_account(stack)
    reply = call(stack, "POST", "/api/v1/users/login", body={"email": account.email, "password": "p" * 129})
    assert reply.status == 400 and "password" in reply.body.decode()
    assert call(stack, "POST", "/api/v1/users/login", body={"email": account.email, "password": PASSWORD}).status == 200
