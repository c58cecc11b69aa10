"""Every service runs for real, answers health and reflection, directly and through
the edge; REST through Envoy reaches the Python services with the right statuses."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from shopmesh_stack.stack import Stack
from tests.declared import SERVICES
from tests.integration.helpers import grpcurl, grpcurl_tls_flags, health_status, http

SERVICE_NAMES = {
    "users": "shopmesh.user.v1.UserService",
    "orders": "shopmesh.order.v1.OrderService",
    "payments": "shopmesh.payment.v1.PaymentService",
    "inventory": "shopmesh.inventory.v1.InventoryService",
    "notifications": "shopmesh.notification.v1.NotificationService",
}


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_serving(stack: Stack, service: str) -> None:
    assert health_status(stack.settings, service) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(stack.settings, service, SERVICE_NAMES[service]) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", SERVICES)
def test_grpcurl_lists_the_service_directly(stack: Stack, service: str) -> None:
    result = grpcurl(
        stack, *grpcurl_tls_flags(stack.settings, service), f"127.0.0.1:{stack.settings.ports.grpc(service)}", "list"
    )
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    assert SERVICE_NAMES[service] in listed
    assert "grpc.health.v1.Health" in listed


@pytest.mark.parametrize("service", SERVICES)
def test_grpcurl_lists_the_service_through_the_edge(stack: Stack, service: str) -> None:
    result = grpcurl(
        stack, "-plaintext", "-H", f"x-shopmesh-service: {service}", f"127.0.0.1:{stack.settings.ports.edge}", "list"
    )
    assert result.returncode == 0, result.stderr
    assert SERVICE_NAMES[service] in result.stdout.split()


def test_grpcurl_describes_and_checks_health_through_the_edge(stack: Stack) -> None:
    edge = f"127.0.0.1:{stack.settings.ports.edge}"
    described = grpcurl(stack, "-plaintext", edge, "describe", "shopmesh.user.v1.UserService")
    assert described.returncode == 0, described.stderr
    assert "rpc RegisterUser ( .shopmesh.user.v1.RegisterUserRequest )" in described.stdout
    checked = grpcurl(
        stack,
        "-plaintext",
        "-H",
        "x-shopmesh-service: orders",
        "-d",
        '{"service": ""}',
        edge,
        "grpc.health.v1.Health/Check",
    )
    assert checked.returncode == 0, checked.stderr
    assert '"status": "SERVING"' in checked.stdout


def test_edge_health(stack: Stack) -> None:
    reply = http(stack, "GET", "/healthz")
    assert reply.status == 200
    assert reply.body.strip() == b"ok"


def test_rest_reaches_a_service_and_its_status_maps_to_http(stack: Stack) -> None:
    # (UNIMPLEMENTED -> 501 with reason NOT_IMPLEMENTED is a platform test: every method is built.)
    reply = http(stack, "POST", "/api/v1/webhooks/stripe", '{"id": "evt_1"}')
    assert reply.status == 400, reply.body
    body = reply.json()
    assert body["code"] == 3  # INVALID_ARGUMENT: the payments service answered, through the transcoder
    assert body["details"][0]["reason"] == "WEBHOOK_SIGNATURE_MISSING"


def test_invalid_argument_is_400_with_field_violations(stack: Stack) -> None:
    reply = http(stack, "GET", "/api/v1/products/not-a-product-id")
    assert reply.status == 400
    body = reply.json()
    assert body["code"] == 3
    bad_request = next(d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest"))
    assert bad_request["fieldViolations"][0]["field"] == "id"
    assert bad_request["fieldViolations"][0]["reason"] == "string.pattern"


def test_invalid_body_field_is_400_naming_it(stack: Stack) -> None:
    reply = http(
        stack,
        "POST",
        "/api/v1/users/register",
        '{"email": "not-an-email", "password": "x", "firstName": "A", "lastName": "B"}',
    )
    assert reply.status == 400
    fields = {v["field"] for d in reply.json()["details"] if "fieldViolations" in d for v in d["fieldViolations"]}
    assert fields == {"email", "password"}


@pytest.mark.parametrize(
    "body",
    ['{"email": "a@b.c", "password":', "not json at all", '{"email": 42, "password": "secret123"}', '{"emial": "x"}'],
)
def test_malformed_json_is_400(stack: Stack, body: str) -> None:
    reply = http(stack, "POST", "/api/v1/users/login", body)
    assert reply.status == 400, reply.body


def test_unknown_path_is_404(stack: Stack) -> None:
    assert http(stack, "GET", "/api/v1/nothing-here").status == 404
    assert http(stack, "GET", "/").status == 404


def test_internal_methods_have_no_route_at_the_edge(stack: Stack) -> None:
    edge = f"127.0.0.1:{stack.settings.ports.edge}"
    selector = ["-plaintext", "-H", "x-shopmesh-service: inventory"]
    internal = grpcurl(
        stack,
        *selector,
        "-d",
        '{"order_id": "0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21"}',
        edge,
        "shopmesh.inventory.v1.InventoryService/GetReservation",
    )
    assert internal.returncode != 0
    # Envoy has no route for it (HTTP 404, which gRPC clients see as UNIMPLEMENTED)...
    assert "Unimplemented" in internal.stderr, internal.stderr
    assert "not implemented yet" not in internal.stderr
    # ...while a public method of the same service is routed to it.
    public = grpcurl(
        stack, *selector, "-d", '{"id": "prod-123"}', edge, "shopmesh.inventory.v1.InventoryService/GetProduct"
    )
    assert public.returncode == 0, public.stderr
    assert '"id": "prod-123"' in public.stdout
