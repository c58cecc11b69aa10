"""Certificates are renewed while the stack runs, and used without a restart.

An instance whose certificates live 30 seconds (its own CA, certificate
renewer, five services and Envoy; on the session stack's PostgreSQL, Kafka,
FerretDB and localstripe, which hold no certificates and would take longer to
start than the test runs) keeps answering after every certificate its
processes started with has expired: each service presents a newer certificate,
the edge reaches the services, and the services reach the users service for
its token keys, all on connections made after the expiry.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_stack.admin_socket import admin_get
from shopmesh_stack.channels import channel
from shopmesh_stack.components import Component
from shopmesh_stack.settings import Ports
from shopmesh_stack.stack import Stack
from tests.declared import SERVICES
from tests.integration.users_client import call, register
from tests.polling import wait_for
from tests.tls import served_certificate

LIFETIME_SECONDS = 30


@dataclass(frozen=True)
class RenewingInstance:
    stack: Stack
    processes: list[Component]
    # Every certificate a process of the instance started with was issued before this.
    started_at: dt.datetime

    def presented(self, service: str) -> x509.Certificate:
        files = self.stack.settings.tls_files("developer")
        assert files is not None
        port = self.stack.settings.ports.grpc(service)
        return served_certificate(port, service, files.cert, files.key, files.ca)

    def edge_presents(self) -> set[int]:
        """Serials of the certificates Envoy presents to the services (its admin /certs)."""
        status, body = admin_get(self.stack.edge.admin_socket, "/certs")
        assert status == 200, body
        contexts = json.loads(body)["certificates"]
        return {int(cert["serial_number"], 16) for context in contexts for cert in context["cert_chain"]}

    def pids(self) -> dict[str, int | None]:
        return {component.name: component.process.pid() for component in self.processes}


@pytest.fixture(scope="module")
def renewing(stack: Stack) -> Iterator[RenewingInstance]:
    data_dir = Path(tempfile.mkdtemp(prefix="shopmesh-renewal-"))
    shared = stack.settings.ports
    ports = replace(
        Ports.free(stack.settings.mesh),
        postgres=shared.postgres,
        ferretdb=shared.ferretdb,
        kafka=shared.kafka,
        kafka_controller=shared.kafka_controller,
        localstripe=shared.localstripe,
    )
    settings = replace(stack.settings, data_dir=data_dir, ports=ports, cert_lifetime_seconds=LIFETIME_SECONDS)
    instance = Stack(settings, stack.installed)
    processes: list[Component] = [instance.renewer, *instance.services.values(), instance.edge]
    try:
        for directory in (settings.log_dir, settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        instance.issue_certificates()
        for component in processes:
            instance.start(component)
        yield RenewingInstance(instance, processes, dt.datetime.now(dt.UTC))
    finally:
        for component in reversed(processes):
            instance.stop(component)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.timeout(300)
def test_calls_keep_working_after_the_start_certificates_expired(renewing: RenewingInstance) -> None:
    pids = renewing.pids()
    first = {service: renewing.presented(service) for service in SERVICES}
    edge_first = renewing.edge_presents()
    assert all(
        cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(minutes=6) for cert in first.values()
    )
    # Past the expiry of whatever the processes started with, and of what they presented just now.
    expired_after = max(
        renewing.started_at + dt.timedelta(seconds=LIFETIME_SECONDS),
        *(cert.not_valid_after_utc for cert in first.values()),
    )
    wait_for(lambda: dt.datetime.now(dt.UTC) > expired_after, LIFETIME_SECONDS + 60, "the start certificates expire")

    for service, before in first.items():
        now = renewing.presented(service)
        assert now.serial_number != before.serial_number, service
        assert now.not_valid_after_utc > dt.datetime.now(dt.UTC) > before.not_valid_after_utc, service
    edge_files = renewing.stack.settings.tls_files("edge")
    assert edge_files is not None

    def edge_presents_its_current_file() -> bool:
        current = x509.load_pem_x509_certificate(edge_files.cert.read_bytes()).serial_number
        return renewing.edge_presents() == {current}

    wait_for(edge_presents_its_current_file, 10, "Envoy presents the renewed edge certificate")
    assert renewing.edge_presents().isdisjoint(edge_first)

    # Through the edge: new connections to users, orders, payments and notifications, each of
    # which fetches the token keys from users over its own channel (first token it sees).
    stack = renewing.stack
    account = register(stack)
    assert call(stack, "GET", "/api/v1/users/me", account).status == 200
    for path, past_authentication in (
        ("/api/v1/orders", {200, 501}),
        ("/api/v1/notifications", {200, 501}),
        ("/api/v1/payments/0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21", {404, 501}),
    ):
        reply = call(stack, "GET", path, account)
        assert reply.status in past_authentication, (path, reply.status, reply.body)

    # Directly between identities: orders' current certificate, inventory's internal method.
    with channel(stack.settings, "inventory", identity="orders") as chan:
        request = inventory_pb.GetReservationRequest(order_id=str(uuid.uuid4()))
        with pytest.raises(grpc.RpcError) as answered:
            inventory_grpc.InventoryServiceStub(chan).GetReservation(request, timeout=10)
    # Authorized as orders (no such reservation), not UNAVAILABLE.
    assert answered.value.code() == grpc.StatusCode.NOT_FOUND

    assert renewing.pids() == pids  # nothing was restarted
