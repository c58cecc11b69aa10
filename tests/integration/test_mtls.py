"""Zero trust between services: mutual TLS with SPIFFE identities and per-method
authorization from the mesh declaration, on the real stack (MESH_TLS on)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
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
from shopmesh_stack.components import Edge
from shopmesh_stack.pki import IdentityFiles, LocalCA
from shopmesh_stack.stack import Stack
from tests.integration.extra_edge import edge_ports, running_edge
from tests.integration.helpers import HttpReply, grpcurl, grpcurl_tls_flags, http
from tests.polling import wait_for

ORDER_ID = "0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21"
# An order never reserved: GetReservation past authorization is NOT_FOUND.
UNRESERVED_ORDER_ID = "7c1f6a0e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
USER_ID = "5d9f1c1e-7d4c-4c5e-9d0a-2b8f3e6a1c11"
# The HTTP/2 client connection preface and an empty SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


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
        (get_order_without_token, "payments", grpc.StatusCode.NOT_FOUND),  # answered: no such order
        (get_order_without_token, "inventory", grpc.StatusCode.NOT_FOUND),  # the orphan reaper asks
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
        (get_order_without_token, "notifications"),
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


def get_jwks_with(stack: Stack, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    address = f"127.0.0.1:{stack.settings.ports.grpc('users')}"
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "users")]) as chan:
        return outcome(lambda: user_grpc.UserServiceStub(chan).GetJwks(user_pb.GetJwksRequest(), timeout=5))


def credentials_for(ca: Path, identity: IdentityFiles | None) -> grpc.ChannelCredentials:
    if identity is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=identity.key.read_bytes(),
        certificate_chain=identity.cert.read_bytes(),
    )


class HandshakeRefused(Exception):
    """The TLS handshake failed (an alert, or the server closed the connection during it)."""


def tls12_handshake_then_http2(stack: Stack, identity: IdentityFiles | None) -> bytes:
    """Handshake with the users service presenting `identity` (or nothing), then the HTTP/2 preface.

    TLS 1.2, where the server checks the client certificate inside the handshake
    (TLS 1.3 would report a refusal only on the first read). Returns the server's
    first bytes; a refused handshake raises HandshakeRefused.
    """
    files = stack.settings.tls_files("developer")
    assert files is not None
    context = ssl.create_default_context(cafile=str(files.ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    with socket.create_connection(("127.0.0.1", stack.settings.ports.grpc("users")), timeout=10) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname="users")
        except (ssl.SSLError, ConnectionResetError) as error:
            raise HandshakeRefused(str(error)) from error
        with tls:
            tls.sendall(HTTP2_PREFACE)
            return tls.recv(9)


def is_http2_settings_frame(header: bytes) -> bool:
    return len(header) == 9 and header[3] == 0x04  # frame type SETTINGS


def rogue_developer(tmp_path: Path) -> IdentityFiles:
    """The developer's SPIFFE id, issued by a CA the mesh does not trust."""
    mesh = load_mesh()
    rogue = LocalCA(tmp_path, mesh.trust_domain, mesh.namespace, dt.timedelta(hours=1))
    rogue.ensure(["developer"])
    return rogue.files("developer")


def test_the_developer_certificate_passes_the_handshake_and_the_call(stack: Stack) -> None:
    """The control for the refusals below: the same client, with the right certificate."""
    files = stack.settings.tls_files("developer")
    assert files is not None
    assert is_http2_settings_frame(tls12_handshake_then_http2(stack, files))
    assert get_jwks_with(stack, credentials_for(files.ca, files)) == grpc.StatusCode.OK


def test_a_client_without_a_certificate_fails_the_handshake(stack: Stack) -> None:
    files = stack.settings.tls_files("developer")
    assert files is not None
    with pytest.raises(HandshakeRefused):
        tls12_handshake_then_http2(stack, None)
    assert get_jwks_with(stack, credentials_for(files.ca, None)) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_fails_the_handshake(stack: Stack, tmp_path: Path) -> None:
    forged = rogue_developer(tmp_path)  # same SPIFFE id as the real developer, wrong issuer
    files = stack.settings.tls_files("developer")
    assert files is not None
    with pytest.raises(HandshakeRefused):
        tls12_handshake_then_http2(stack, forged)
    assert get_jwks_with(stack, credentials_for(files.ca, forged)) == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_gets_no_http2_from_a_service(stack: Stack) -> None:
    # The same bytes a plaintext gRPC client opens with; a TLS server answers no HTTP/2 frame.
    with socket.create_connection(("127.0.0.1", stack.settings.ports.grpc("users")), timeout=10) as raw:
        raw.sendall(HTTP2_PREFACE)
        answer = raw.recv(9)
    assert not is_http2_settings_frame(answer), answer
    with grpc.insecure_channel(f"127.0.0.1:{stack.settings.ports.grpc('users')}") as chan:
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


def test_the_edge_refuses_an_upstream_with_another_services_spiffe_id(stack: Stack) -> None:
    """An edge whose inventory upstream is really orders: same CA, wrong SPIFFE id -> no call goes through."""
    ports = edge_ports(stack, {"inventory": stack.settings.ports.grpc("orders")})
    with running_edge(stack, "envoy-misrouted", settings=replace(stack.settings, ports=ports)) as edge:
        # The control: the real inventory behind the session's edge answers.
        assert http(stack, "GET", "/api/v1/products/prod-123").status == 200
        refused = edge_get(edge, "/api/v1/products/prod-123")
        assert refused.status == 503, refused.body
        assert refused.json()["code"] == 14
        # The same edge reaches a correctly addressed service.
        assert edge_get(edge, "/.well-known/jwks.json").status == 200
        log = stack.settings.log_dir / f"{edge.name}-access.log"
        entry = wait_for_access_log_entry(log, "/api/v1/products/prod-123")
    # An upstream connection failure (UF); the edge retries connect failures, so URX may come with it.
    assert "UF" in entry["flags"].split(","), entry
    assert "CERTIFICATE_VERIFY_FAILED" in entry["details"], entry
    assert "SAN_matcher" in entry["details"], entry
    assert "sa/orders" in entry["details"], entry


def edge_get(edge: Edge, path: str) -> HttpReply:
    try:
        with urllib.request.urlopen(f"{edge.url}{path}", timeout=15) as response:
            return HttpReply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, dict(error.headers), error.read())


def wait_for_access_log_entry(log: Path, path: str) -> dict[str, Any]:
    """The first access log entry for `path` (Envoy flushes its access log periodically)."""

    def entries() -> list[dict[str, Any]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [entry for line in lines if (entry := json.loads(line))["path"] == path]

    wait_for(lambda: bool(entries()), 20, f"{path} in {log.name}")
    return entries()[0]


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


def test_up_reissues_a_missing_certificate_and_its_running_holder_presents_it(stack: Stack) -> None:
    from cryptography import x509
    from grpc_health.v1 import health_pb2

    from shopmesh_stack.channels import health_status
    from tests.polling import wait_for
    from tests.tls import served_certificate

    files = stack.settings.tls_files("payments")
    developer = stack.settings.tls_files("developer")
    assert files is not None and developer is not None
    old_pid = stack.services["payments"].process.pid()
    old_cert = files.cert.read_bytes()
    files.cert.unlink()
    stack.up()
    new_serial = x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number
    assert files.cert.read_bytes() != old_cert

    def presents_the_new_one() -> bool:
        port = stack.settings.ports.grpc("payments")
        served = served_certificate(port, "payments", developer.cert, developer.key, developer.ca)
        return served.serial_number == new_serial

    wait_for(presents_the_new_one, 10, "payments presents its reissued certificate")
    assert stack.services["payments"].process.pid() == old_pid  # reloaded, not restarted
    assert health_status(stack.settings, "payments") == health_pb2.HealthCheckResponse.SERVING
