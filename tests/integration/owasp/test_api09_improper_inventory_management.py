"""OWASP API9:2023 Improper Inventory Management.

What shopmesh does: there is one inventory of the API, the Protobuf contracts in
proto/ with mesh/mesh.yaml, and everything else is generated from it: the edge's
routes (a route per declared non-internal method, matched on its gRPC path after
transcoding), the OpenAPI document the edge serves at /api/v1/openapi.json, the
API reference in docs/api and the clients. There is one version, v1 (every
answer says so in `x-api-version`); no old version, no undeclared or internal
method and no debugging aid is routed. What is not in the inventory answers 404
(REST) or UNIMPLEMENTED (gRPC), from the edge itself.

What these tests prove, against the running edge's configuration (Envoy's
`/config_dump`): every route either serves a declared method (documented in the
OpenAPI document when it has an HTTP binding, with bearer auth exactly where the
route demands a token) or is one of the edge's few own routes, each named here
with its reason; every documented operation is routed; and paths that are in no
document (other versions, listings that do not exist, verbs a path does not
have, internal methods over REST or gRPC) get 404 or UNIMPLEMENTED.
"""

from __future__ import annotations

import json
import uuid

import grpc

from shopmesh_platform.mesh import AccessClass, load_mesh
from shopmesh_render.routes import rest_routes
from shopmesh_stack.stack import Stack
from tests.integration.helpers import http
from tests.integration.owasp.support import lower, new_account
from tests.integration.test_openapi import DOCUMENT, documented_operations, edge_routes, is_platform_route
from tests.integration.users_client import call

# The edge's own routes (no declared method behind them), and why each exists.
EDGE_OWN_ROUTES = {
    "healthz": "the edge's liveness answer",
    "openapi": "the OpenAPI document itself",
    "malformed-grpc-timeout-grpc": "refuses a malformed grpc-timeout header (gRPC clients)",
    "malformed-grpc-timeout": "refuses a malformed grpc-timeout header (REST clients)",
    "malformed-grpc-encoding-grpc": "refuses a malformed grpc-encoding header (gRPC clients)",
    "malformed-grpc-encoding": "refuses a malformed grpc-encoding header (REST clients)",
    "cors-preflight": "lets the CORS filter answer preflights",
    "unknown-grpc": "answers UNIMPLEMENTED for gRPC methods nobody declared",
}
# Health and reflection through the edge (developer profile only; see API8): `<service>.platform<prefix>`.
PLATFORM_SUFFIXES = (".platform/grpc.health.v1.Health/", ".platform/grpc.reflection.")


def test_every_route_is_a_declared_method_or_one_of_the_edges_own(stack: Stack) -> None:
    contract, others = edge_routes(stack)
    mesh = load_mesh()
    declared = {m.path for m in mesh.all_methods() if m.access is not AccessClass.INTERNAL}
    assert set(contract) == declared
    own = {route["name"] for route in others if not route["name"].endswith(PLATFORM_SUFFIXES)}
    assert own == set(EDGE_OWN_ROUTES)
    assert all(is_platform_route(route) for route in others if route["name"] not in ("healthz", "openapi"))


def test_every_routed_method_with_an_http_binding_is_documented(stack: Stack) -> None:
    contract, _ = edge_routes(stack)
    bound = {rest.method.path for rest in rest_routes(load_mesh())}
    operations = documented_operations()
    documented = {operation["operationId"]: operation for _, _, operation in operations}
    routed = {route.operation_id: route for path, route in contract.items() if path in bound}
    assert set(documented) == set(routed)
    for operation_id, route in routed.items():
        bearer = {"bearerAuth": []} in documented[operation_id].get("security", [])
        assert bearer == route.needs_token, operation_id
    # The document the edge serves is this one, and names one version.
    served = http(stack, "GET", "/api/v1/openapi.json")
    assert served.json() == json.loads(DOCUMENT.read_text())
    assert all(path.startswith(("/api/v1/", "/.well-known/")) for path in served.json()["paths"])


def test_what_is_in_no_document_answers_not_found(stack: Stack) -> None:
    account = new_account(stack)
    some_id = str(uuid.uuid4())
    undocumented = [
        ("GET", "/api/v2/users/me"),
        ("GET", "/api/v0/products"),
        ("GET", "/v1/products"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/payments"),
        ("DELETE", f"/api/v1/orders/{some_id}"),
        ("PUT", f"/api/v1/users/{some_id}"),
        ("DELETE", "/api/v1/products/prod-123"),
        ("POST", "/api/v1/products/prod-123:reserveStock"),
        ("GET", f"/api/v1/reservations/{some_id}"),
        ("POST", "/shopmesh.inventory.v1.InventoryService/ReserveStock"),
        ("POST", "/shopmesh.user.v1.UserService/GetUserContact"),
        ("GET", "/api/v1/users/me/../../internal"),
    ]
    for method, path in undocumented:
        reply = call(stack, method, path, account, None if method in ("GET", "DELETE") else {})
        assert reply.status == 404, (method, path, reply.status, reply.body)
        assert reply.json() == {"code": 5, "message": "not found"}, (method, path)
        assert lower(reply.headers)["x-api-version"] == "v1"


def test_internal_and_unknown_grpc_methods_are_unimplemented_at_the_edge(stack: Stack) -> None:
    mesh = load_mesh()
    paths = [m.path for m in mesh.all_methods() if m.access is AccessClass.INTERNAL]
    paths += ["/shopmesh.user.v1.UserService/ListUsers", "/shopmesh.admin.v1.AdminService/Exec"]
    with grpc.insecure_channel(f"127.0.0.1:{stack.settings.ports.edge}") as chan:
        for path in paths:
            rpc = chan.unary_unary(path, request_serializer=None, response_deserializer=None)
            try:
                rpc(b"", timeout=15)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNIMPLEMENTED, path
            else:
                raise AssertionError(f"{path} answered through the edge")
