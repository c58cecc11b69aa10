"""The generated descriptor set (what Envoy loads) carries every service and the
REST mapping of every path of the seed surface (DESIGN §4). Reads the binary
descriptor, not the .proto sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from shopmesh_platform.mesh import load_mesh

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / "gen" / "descriptors" / "shopmesh.binpb"

SERVICES = {
    "shopmesh.user.v1.UserService",
    "shopmesh.order.v1.OrderService",
    "shopmesh.payment.v1.PaymentService",
    "shopmesh.inventory.v1.InventoryService",
    "shopmesh.notification.v1.NotificationService",
}

# (HTTP verb, path template, body, gRPC method) for the seed surface plus the extras.
REST_SURFACE = [
    ("post", "/api/v1/users/register", "*", "shopmesh.user.v1.UserService.RegisterUser"),
    ("post", "/api/v1/users/login", "*", "shopmesh.user.v1.UserService.Login"),
    ("get", "/api/v1/users/{id}", "", "shopmesh.user.v1.UserService.GetUser"),
    ("get", "/api/v1/users/me", "", "shopmesh.user.v1.UserService.GetMe"),
    ("patch", "/api/v1/users/{id}", "*", "shopmesh.user.v1.UserService.UpdateUser"),
    ("post", "/api/v1/users/logout", "*", "shopmesh.user.v1.UserService.Logout"),
    ("post", "/api/v1/users/{id}:suspend", "*", "shopmesh.user.v1.UserService.SuspendUser"),
    ("get", "/.well-known/jwks.json", "", "shopmesh.user.v1.UserService.GetJwks"),
    ("get", "/api/v1/products", "", "shopmesh.inventory.v1.InventoryService.ListProducts"),
    ("get", "/api/v1/products/{id}", "", "shopmesh.inventory.v1.InventoryService.GetProduct"),
    ("post", "/api/v1/orders", "*", "shopmesh.order.v1.OrderService.CreateOrder"),
    ("get", "/api/v1/orders/{id}", "", "shopmesh.order.v1.OrderService.GetOrder"),
    ("get", "/api/v1/orders", "", "shopmesh.order.v1.OrderService.ListOrders"),
    ("patch", "/api/v1/orders/{id}/status", "*", "shopmesh.order.v1.OrderService.UpdateOrderStatus"),
    ("post", "/api/v1/orders/{id}:cancel", "*", "shopmesh.order.v1.OrderService.CancelOrder"),
    ("post", "/api/v1/payments", "*", "shopmesh.payment.v1.PaymentService.CreatePayment"),
    ("get", "/api/v1/payments/{id}", "", "shopmesh.payment.v1.PaymentService.GetPayment"),
    ("post", "/api/v1/payments/{id}:refund", "*", "shopmesh.payment.v1.PaymentService.RefundPayment"),
    ("post", "/api/v1/webhooks/stripe", "body", "shopmesh.payment.v1.PaymentService.HandleStripeWebhook"),
    ("get", "/api/v1/notifications", "", "shopmesh.notification.v1.NotificationService.ListNotifications"),
]


def load_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())


def http_rules() -> dict[str, http_pb2.HttpRule]:
    rules = {}
    for file in load_set().file:
        for service in file.service:
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rules[f"{file.package}.{service.name}.{method.name}"] = method.options.Extensions[
                        annotations_pb2.http
                    ]
    return rules


def rpc_names() -> set[str]:
    return {
        f"/{file.package}.{service.name}/{method.name}"
        for file in load_set().file
        if file.package.startswith("shopmesh.")
        for service in file.service
        for method in service.method
    }


def test_every_service_is_in_the_descriptor_set() -> None:
    services = {f"{f.package}.{s.name}" for f in load_set().file for s in f.service}
    assert services >= SERVICES


def test_descriptor_set_is_self_contained_for_envoy() -> None:
    names = {f.name for f in load_set().file}
    for needed in (
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/api/httpbody.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
        "buf/validate/validate.proto",
    ):
        assert needed in names


@pytest.mark.parametrize(("verb", "path", "body", "method"), REST_SURFACE)
def test_rest_path_is_mapped(verb: str, path: str, body: str, method: str) -> None:
    rule = http_rules()[method]
    assert rule.WhichOneof("pattern") == verb
    assert getattr(rule, verb) == path
    assert rule.body == body


def output_types() -> dict[str, str]:
    return {
        f"{file.package}.{service.name}.{method.name}": method.output_type.lstrip(".")
        for file in load_set().file
        for service in file.service
        for method in service.method
    }


def test_standard_methods_return_the_bare_resource() -> None:
    outputs = output_types()
    assert outputs["shopmesh.user.v1.UserService.GetUser"] == "shopmesh.user.v1.User"
    assert outputs["shopmesh.order.v1.OrderService.CreateOrder"] == "shopmesh.order.v1.Order"
    assert outputs["shopmesh.order.v1.OrderService.GetOrder"] == "shopmesh.order.v1.Order"
    assert outputs["shopmesh.inventory.v1.InventoryService.GetProduct"] == "shopmesh.inventory.v1.Product"


def test_no_rule_uses_response_body() -> None:
    # Envoy's transcoder refuses response_body on non-HttpBody fields (it fails to start).
    assert [name for name, rule in http_rules().items() if rule.response_body] == []


def test_every_rpc_has_an_access_class_and_every_declaration_an_rpc() -> None:
    declared = {m.path for m in load_mesh().all_methods()}
    assert rpc_names() == declared
