"""Renewed certificates are used without a restart: a server presents the new one
on new connections, a channel presents the new one on its next call, and calls
already in flight on the old channel still finish. A key that arrives without
its certificate is not taken."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.certificates import CertificateFiles
from shopmesh_platform.channel import create_channel
from shopmesh_platform.config import TlsFiles
from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.pki import IdentityFiles, LocalCA
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build
from tests.polling import eventually
from tests.tls import served_certificate

LIFETIME = dt.timedelta(hours=1)


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def tls_env(files: IdentityFiles) -> dict[str, str]:
    return {
        "MESH_TLS": "on",
        "SHOPMESH_TLS_CERT": str(files.cert),
        "SHOPMESH_TLS_KEY": str(files.key),
        "SHOPMESH_TLS_CA": str(files.ca),
    }


def reissue(authority: LocalCA, identity: str) -> int:
    """Renew `identity` now (as the renewer would near expiry); returns the new serial."""
    assert authority.ensure([identity], renew_before=LIFETIME * 2) == [identity]
    return serial(authority.files(identity).cert.read_bytes())


@pytest.fixture
def authority(tmp_path: Path) -> LocalCA:
    mesh = load_mesh()
    ca = LocalCA(tmp_path / "pki", mesh.trust_domain, mesh.namespace, LIFETIME)
    ca.ensure(["inventory", "developer"])
    return ca


class PeerRecorder(SampleInventory):
    """Records the serial of each caller's certificate; `prod-hold` waits for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[int] = []
        self.release = asyncio.Event()

    async def GetProduct(self, request: inventory_pb2.GetProductRequest, context: Any) -> inventory_pb2.Product:
        self.peers.append(serial(bytes(context.auth_context()["x509_pem_cert"][0])))
        if request.id == "prod-hold":
            await self.release.wait()
        return await super().GetProduct(request, context)


async def test_a_server_presents_its_renewed_certificate_without_a_restart(
    make_config: ConfigFactory, authority: LocalCA
) -> None:
    server = build(make_config("inventory", **tls_env(authority.files("inventory"))), SampleInventory())
    await server.start()
    developer = authority.files("developer")

    async def presented() -> int:
        certificate = await asyncio.to_thread(
            served_certificate, server.grpc_port, "inventory", developer.cert, developer.key, developer.ca
        )
        return certificate.serial_number

    try:
        assert await presented() == serial(authority.files("inventory").cert.read_bytes())
        renewed = reissue(authority, "inventory")
        await eventually(presented, lambda seen: seen == renewed, timeout=10)
    finally:
        await server.drain()


async def test_a_channel_presents_the_renewed_certificate_and_lets_calls_in_flight_finish(
    make_config: ConfigFactory, authority: LocalCA
) -> None:
    servicer = PeerRecorder()
    server = build(make_config("inventory", **tls_env(authority.files("inventory"))), servicer)
    await server.start()
    # Any service's config would do: the caller is who its certificate says (developer).
    caller = make_config("orders", **tls_env(authority.files("developer")))
    original = serial(authority.files("developer").cert.read_bytes())
    try:
        async with create_channel(caller, "inventory", address=f"127.0.0.1:{server.grpc_port}") as channel:
            stub = inventory_grpc.InventoryServiceStub(channel)
            await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-1"), timeout=10)
            held = stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-hold"), timeout=30)
            await eventually(lambda: asyncio.sleep(0, len(servicer.peers)), lambda count: count == 2, timeout=10)
            renewed = reissue(authority, "developer")

            async def caller_seen_by_the_server() -> int:
                await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-2"), timeout=10)
                return servicer.peers[-1]

            await eventually(caller_seen_by_the_server, lambda seen: seen == renewed, timeout=10)
            servicer.release.set()
            assert (await held).id == "prod-hold"  # the old channel waited for it
    finally:
        await server.drain()
    assert servicer.peers[:2] == [original, original]


def test_a_key_without_its_certificate_is_not_taken(authority: LocalCA, tmp_path: Path) -> None:
    files = authority.files("developer")
    now = [0.0]
    watcher = CertificateFiles(
        TlsFiles(
            files.cert.read_bytes(), files.key.read_bytes(), files.ca.read_bytes(), files.cert, files.key, files.ca
        ),
        recheck_seconds=1.0,
        clock=lambda: now[0],
    )
    first = watcher.current()
    old_cert = files.cert.read_bytes()
    reissue(authority, "developer")
    new_cert = files.cert.read_bytes()
    # The moment between the renewer's two renames: the new key, the old certificate.
    staged = tmp_path / "staged.pem"
    staged.write_bytes(old_cert)
    os.replace(staged, files.cert)
    assert watcher.current() == first  # not looked at again within a second
    now[0] += 1.0
    assert watcher.current() == first  # looked at, refused: the key is not the certificate's
    staged.write_bytes(new_cert)
    os.replace(staged, files.cert)
    now[0] += 1.0
    taken = watcher.current()
    assert (taken.cert, taken.key, taken.generation) == (new_cert, files.key.read_bytes(), first.generation + 1)
