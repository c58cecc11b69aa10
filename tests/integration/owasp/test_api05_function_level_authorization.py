"""OWASP API5:2023 Broken Function Level Authorization.

What shopmesh does: every method's access class is declared in mesh/mesh.yaml and
enforced by the platform's auth interceptor of the service itself, before the
request is even validated: `user` methods with `roles: [admin]` need a token
carrying the admin role (suspending accounts, moving orders along, refunds,
creating products and adjusting stock); `internal` methods only answer the mesh
identities (SPIFFE ids of client certificates) declared as their callers and have
no route at the edge; service callers named on a `public`/`user` method may call
only that method. A method missing from the declaration cannot be called at all.

What these tests prove, for every admin-only method of the declaration: a
customer is refused at the edge (403) and directly at the service
(PERMISSION_DENIED), nothing changes (the customer's own order, payment and
account, a product's stock), and an admin passes the same check; for every method
and every mesh identity, directly on the service: an identity that is neither the
front door nor a declared caller is PERMISSION_DENIED, and internal methods are
refused to the developer identity and absent from the edge.
"""

from __future__ import annotations

import re
import uuid

import grpc
import pytest

from shopmesh_platform.mesh import AccessClass, MethodDecl, load_mesh
from shopmesh_render.routes import RestRoute, rest_routes
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.declared import SERVICES
from tests.integration.inventory_client import create_product
from tests.integration.orders_client import get_order, place
from tests.integration.owasp.support import bearer, new_account, new_admin
from tests.integration.users_client import Account, call

MESH = load_mesh()
ADMIN_ONLY = [method for method in MESH.all_methods() if "admin" in method.roles]
INTERNAL = [method for method in MESH.all_methods() if method.access is AccessClass.INTERNAL]
PLACEHOLDER = re.compile(r"\{([^}]+)\}")
PRODUCT_PRICE = 4.0


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return new_admin(stack)


@pytest.fixture(scope="module")
def customer(stack: Stack) -> Account:
    return new_account(stack)


def call_raw(stack: Stack, method: MethodDecl, token: str | None, identity: str = "developer") -> grpc.StatusCode:
    """`method` on its service, directly as `identity`, with an empty request (authorization comes first)."""
    with channel(stack.settings, method.service, identity=identity) as chan:
        rpc = chan.unary_unary(method.path, request_serializer=None, response_deserializer=None)
        try:
            rpc(b"", metadata=bearer(token) if token else (), timeout=15)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_the_declaration_has_admin_only_and_internal_methods() -> None:
    # If these vanished, the tests below would prove nothing.
    assert len(ADMIN_ONLY) >= 5 and len(INTERNAL) >= 3
    assert {m.access for m in ADMIN_ONLY} == {AccessClass.USER}


@pytest.mark.parametrize("method", ADMIN_ONLY, ids=lambda m: f"{m.service}.{m.name}")
def test_admin_only_methods_refuse_customers_directly_at_the_service(
    stack: Stack, customer: Account, admin: Account, method: MethodDecl
) -> None:
    assert call_raw(stack, method, customer.token) == grpc.StatusCode.PERMISSION_DENIED
    # An admin's token passes the role check (the empty request then fails validation, or finds nothing).
    assert call_raw(stack, method, admin.token) not in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    )


def concrete(template: str, product_id: str) -> str:
    def value(match: re.Match[str]) -> str:
        return product_id if match[1].lower().startswith("product") else str(uuid.uuid4())

    return PLACEHOLDER.sub(value, template)


@pytest.mark.parametrize(
    "route",
    [route for route in rest_routes(MESH) if "admin" in route.method.roles],
    ids=lambda r: f"{r.verb} {r.template}",
)
def test_admin_only_routes_refuse_customers_at_the_edge(stack: Stack, customer: Account, route: RestRoute) -> None:
    verb, template = route.verb, route.template
    reply = call(stack, verb, concrete(template, "prod-123"), customer, None if verb == "GET" else {})
    assert reply.status == 403, (verb, template, reply.body)
    assert reply.json()["code"] == 7


def test_a_customer_cannot_act_as_an_admin_on_their_own_things(stack: Stack, customer: Account, admin: Account) -> None:
    product = create_product(stack, admin, stock=10, price=PRODUCT_PRICE)
    assert product.status == 200, product.body
    product_id = product.json()["id"]
    order = place(stack, customer, [(product_id, 1, PRODUCT_PRICE)])
    paid = call(
        stack,
        "POST",
        "/api/v1/payments",
        customer,
        {"orderId": order["id"], "amount": PRODUCT_PRICE, "currency": "USD", "paymentMethodId": "pm_card_visa"},
    )
    assert paid.status == 200, paid.body
    payment_id = paid.json()["paymentId"]
    victim = new_account(stack)

    attempts = {
        "ship own order": ("PATCH", f"/api/v1/orders/{order['id']}/status", {"status": "ORDER_STATUS_SHIPPED"}),
        "refund own payment": (
            "POST",
            f"/api/v1/payments/{payment_id}:refund",
            {"amount": 0, "reason": "free stuff", "requestId": str(uuid.uuid4())},
        ),
        "restock": (
            "POST",
            f"/api/v1/products/{product_id}:adjustStock",
            {"delta": 1000, "reason": "mine", "requestId": str(uuid.uuid4())},
        ),
        "new product": ("POST", "/api/v1/products", {"id": "prod-owasp-fake", "name": "x", "price": 1, "stock": 1}),
        "suspend someone": ("POST", f"/api/v1/users/{victim.id}:suspend", {"reason": "because"}),
        "suspend self": ("POST", f"/api/v1/users/{customer.id}:suspend", {"reason": "because"}),
    }
    for what, (verb, path, body) in attempts.items():
        reply = call(stack, verb, path, customer, body)
        assert reply.status == 403, (what, reply.body)

    assert call(stack, "GET", f"/api/v1/payments/{payment_id}", customer).json()["amountRefunded"] == 0
    assert call(stack, "GET", f"/api/v1/products/{product_id}", customer).json()["stockAvailable"] == 10 - 1
    assert call(stack, "GET", "/api/v1/products/prod-owasp-fake", customer).status == 404
    assert call(stack, "GET", "/api/v1/users/me", victim).status == 200
    assert get_order(stack, customer, order["id"]).json()["status"] != "ORDER_STATUS_SHIPPED"
    # The same call with an admin's token passes: the refusal was the role's.
    refund = call(stack, "POST", f"/api/v1/payments/{payment_id}:refund", admin, attempts["refund own payment"][2])
    assert refund.status == 200, refund.body


@pytest.mark.parametrize("method", MESH.all_methods(), ids=lambda m: f"{m.service}.{m.name}")
def test_mesh_identities_reach_only_what_the_declaration_lets_them(stack: Stack, method: MethodDecl) -> None:
    for identity in SERVICES:
        allowed = identity in method.callers
        code = call_raw(stack, method, None, identity)
        if allowed:
            assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), identity
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, identity


@pytest.mark.parametrize("method", INTERNAL, ids=lambda m: f"{m.service}.{m.name}")
def test_internal_methods_are_not_for_people_or_the_edge(stack: Stack, customer: Account, method: MethodDecl) -> None:
    assert call_raw(stack, method, customer.token) == grpc.StatusCode.PERMISSION_DENIED
    with grpc.insecure_channel(f"127.0.0.1:{stack.settings.ports.edge}") as chan:
        rpc = chan.unary_unary(method.path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            rpc(b"", metadata=bearer(customer.token), timeout=15)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
