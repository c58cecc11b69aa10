"""Zero trust between services: mutual TLS with SPIFFE identities and per-method
authorization from the mesh declaration, on the real stack (MESH_TLS on)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh.order.v1 import order_service_pb2 as order_pb
from shopmesh.order.v1 import order_service_pb2_grpc as order_grpc
from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh.user.v1 import user_service_pb2_grpc as user_grpc
from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.channels import channel
from shopmesh_stack.pki import LocalCA
from shopmesh_stack.stack import Stack
from tests.integration.helpers import grpcurl, grpcurl_tls_flags

ORDER_ID = "0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21"
# An order never reserved: GetReservation past authorization is NOT_FOUND.
UNRESERVED_ORDER_ID = "7c1f6a0e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
USER_ID = "5d9f1c1e-7d4c-4c5e-9d0a-2b8f3e6a1c11"


def outcome(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def reserve_stock(stack: Stack, identity: str) -> grpc.StatusCode:
    with channel(stack.settings, "inventory", identity=identity) as chan:
        request = inventory_pb.ReserveStockRequest(
            order_id=ORDER_ID, lines=[inventory_pb.ReservationLineInput(product_id="prod-123", quantity=1)]
        )
        return outcome(lambda: inventory_grpc.InventoryServiceStub(chan).ReserveStock(request, timeout=10))


def get_reservation(stack: Stack, identity: str) -> grpc.StatusCode:
    with channel(stack.settings, "inventory", identity=identity) as chan:
        request = inventory_pb.GetReservationRequest(order_id=UNRESERVED_ORDER_ID)
        return outcome(lambda: inventory_grpc.InventoryServiceStub(chan).GetReservation(request, timeout=10))


def get_order_without_token(stack: Stack, identity: str) -> grpc.StatusCode:
    with channel(stack.settings, "orders", identity=identity) as chan:
        return outcome(
            lambda: order_grpc.OrderServiceStub(chan).GetOrder(order_pb.GetOrderRequest(id=ORDER_ID), timeout=10)
        )


def get_jwks(stack: Stack, identity: str) -> grpc.StatusCode:
    with channel(stack.settings, "users", identity=identity) as chan:
        return outcome(lambda: user_grpc.UserServiceStub(chan).GetJwks(user_pb.GetJwksRequest(), timeout=10))


def suspend_user(stack: Stack, identity: str) -> grpc.StatusCode:
    with channel(stack.settings, "users", identity=identity) as chan:
        request = user_pb.SuspendUserRequest(id=USER_ID, reason="x")
        return outcome(lambda: user_grpc.UserServiceStub(chan).SuspendUser(request, timeout=10))


def login(stack: Stack, identity: str) -> grpc.StatusCode:
    with channel(stack.settings, "users", identity=identity) as chan:
        request = user_pb.LoginRequest(email="nobody@example.com", password="whatever1")
        return outcome(lambda: user_grpc.UserServiceStub(chan).Login(request, timeout=10))


# Past authorization, these methods answer (UNIMPLEMENTED for those not built yet;
# NOT_FOUND or UNAUTHENTICATED for unknown things); refusal is PERMISSION_DENIED.
@pytest.mark.parametrize(
    ("call", "identity", "expected"),
    [
        (reserve_stock, "orders", grpc.StatusCode.OK),
        (get_reservation, "orders", grpc.StatusCode.NOT_FOUND),
        (get_order_without_token, "payments", grpc.StatusCode.UNIMPLEMENTED),
        (get_jwks, "orders", grpc.StatusCode.OK),
        (get_jwks, "notifications", grpc.StatusCode.OK),
        (login, "edge", grpc.StatusCode.UNAUTHENTICATED),
        (login, "developer", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_declared_caller_method_pairs_pass(stack: Stack, call: Any, identity: str, expected: grpc.StatusCode) -> None:
    assert call(stack, identity) == expected


@pytest.mark.parametrize(
    ("call", "identity"),
    [
        (suspend_user, "notifications"),  # a service calling a user method it is not declared for
        (reserve_stock, "edge"),  # the edge calling an internal method
        (reserve_stock, "developer"),  # the developer identity calling an internal mutating method
        (reserve_stock, "payments"),  # a service not among the declared callers
        (get_reservation, "notifications"),
        (get_order_without_token, "inventory"),
        (login, "orders"),  # public methods are for the edge, not for other services
    ],
)
def test_undeclared_pairs_are_permission_denied(stack: Stack, call: Any, identity: str) -> None:
    assert call(stack, identity) == grpc.StatusCode.PERMISSION_DENIED


def test_health_and_reflection_are_for_the_developer_and_the_edge(stack: Stack) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    def check(identity: str) -> grpc.StatusCode:
        with channel(stack.settings, "users", identity=identity) as chan:
            stub = health_pb2_grpc.HealthStub(chan)
            return outcome(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=10))

    assert check("developer") == grpc.StatusCode.OK
    assert check("edge") == grpc.StatusCode.OK
    assert check("orders") == grpc.StatusCode.PERMISSION_DENIED


def test_streaming_health_watch_and_reflection_are_for_the_developer_and_the_edge(stack: Stack) -> None:
    """Streaming platform methods go through the same checks as unary ones."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    def watch(identity: str) -> grpc.StatusCode:
        with channel(stack.settings, "users", identity=identity) as chan:
            replies = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(), timeout=10)
            try:
                first = next(replies)
            except grpc.RpcError as error:
                return error.code()
            replies.cancel()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            return grpc.StatusCode.OK

    def reflect(identity: str) -> grpc.StatusCode:
        with channel(stack.settings, "users", identity=identity) as chan:
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            replies = reflection_pb2_grpc.ServerReflectionStub(chan).ServerReflectionInfo(iter([request]), timeout=10)
            try:
                names = [s.name for reply in replies for s in reply.list_services_response.service]
            except grpc.RpcError as error:
                return error.code()
            assert "shopmesh.user.v1.UserService" in names
            return grpc.StatusCode.OK

    assert watch("developer") == grpc.StatusCode.OK
    assert reflect("developer") == grpc.StatusCode.OK
    assert watch("orders") == grpc.StatusCode.PERMISSION_DENIED
    assert reflect("orders") == grpc.StatusCode.PERMISSION_DENIED


def test_a_client_without_a_certificate_cannot_call(stack: Stack) -> None:
    files = stack.settings.tls_files("developer")
    assert files is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=files.ca.read_bytes())
    address = f"127.0.0.1:{stack.settings.ports.grpc('users')}"
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "users")]) as chan:
        assert outcome(lambda: user_grpc.UserServiceStub(chan).GetJwks(user_pb.GetJwksRequest(), timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    with grpc.insecure_channel(address) as chan:
        assert outcome(lambda: user_grpc.UserServiceStub(chan).GetJwks(user_pb.GetJwksRequest(), timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )


def test_a_certificate_from_another_ca_cannot_call(stack: Stack, tmp_path: Path) -> None:
    mesh = load_mesh()
    rogue = LocalCA(tmp_path, mesh.trust_domain, mesh.namespace, dt.timedelta(hours=1))
    rogue.ensure(["developer"])  # same SPIFFE id as the real developer, wrong issuer
    forged = rogue.files("developer")
    real_ca = stack.settings.tls_files("developer")
    assert real_ca is not None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=real_ca.ca.read_bytes(),
        private_key=forged.key.read_bytes(),
        certificate_chain=forged.cert.read_bytes(),
    )
    address = f"127.0.0.1:{stack.settings.ports.grpc('users')}"
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "users")]) as chan:
        assert outcome(lambda: user_grpc.UserServiceStub(chan).GetJwks(user_pb.GetJwksRequest(), timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )


def test_grpcurl_with_the_developer_certificate_lists_and_calls_and_plaintext_fails(stack: Stack) -> None:
    address = f"127.0.0.1:{stack.settings.ports.grpc('users')}"
    flags = grpcurl_tls_flags(stack.settings, "users")
    assert "-cert" in flags
    listed = grpcurl(stack, *flags, address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "shopmesh.user.v1.UserService" in listed.stdout.split()
    called = grpcurl(stack, *flags, address, "shopmesh.user.v1.UserService/GetJwks")
    assert called.returncode == 0, called.stderr
    assert '"alg": "EdDSA"' in called.stdout
    plaintext = grpcurl(stack, "-plaintext", address, "list")
    assert plaintext.returncode != 0


def test_every_service_certificate_names_its_spiffe_identity(stack: Stack) -> None:
    from cryptography import x509

    mesh = load_mesh()
    for identity in (*mesh.services, "edge", "developer"):
        files = stack.settings.tls_files(identity)
        assert files is not None
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        assert uris == [f"spiffe://{mesh.trust_domain}/ns/{mesh.namespace}/sa/{identity}"]
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=24, minutes=5)
    assert (stack.settings.pki_dir / "ca.key").stat().st_mode & 0o077 == 0


@pytest.mark.restarts_stack
def test_up_reissues_a_missing_certificate_and_restarts_its_holder(stack: Stack) -> None:
    from grpc_health.v1 import health_pb2

    from shopmesh_stack.channels import health_status

    files = stack.settings.tls_files("payments")
    assert files is not None
    old_pid = stack.services["payments"].process.pid()
    old_cert = files.cert.read_bytes()
    files.cert.unlink()
    stack.up()
    assert files.cert.read_bytes() != old_cert
    new_pid = stack.services["payments"].process.pid()
    assert new_pid is not None and new_pid != old_pid
    assert health_status(stack.settings, "payments") == health_pb2.HealthCheckResponse.SERVING
    assert stack.services["users"].process.running()
