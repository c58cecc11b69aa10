"""The runtime: the store chosen by mesh.yaml, relays only for publishing services,
consumers started before the server and drained between health NOT_SERVING and
the end of in-flight calls; the platform imports no service's stubs."""

from __future__ import annotations

import ast
import asyncio
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.auth.jwks import IssuerJwks
from shopmesh_platform.config import ConfigError
from shopmesh_platform.events.consumer import Handlers
from shopmesh_platform.mesh import load_mesh
from shopmesh_platform.runtime import Runtime
from shopmesh_platform.server import ServiceBinding
from tests.platform.sample_service import SampleInventory
from tests.polling import eventually

PLATFORM = Path(__file__).resolve().parents[2] / "services" / "platform" / "shopmesh_platform"
NOWHERE = "127.0.0.1:1"  # nothing listens: Kafka and the issuer stay unreachable in these tests


def runtime_for(tmp_path: Path, mesh: Mapping[str, Any], service: str = "inventory", **env: str) -> Runtime:
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(yaml.safe_dump(dict(mesh)))
    values = {
        "SHOPMESH_MESH_FILE": str(mesh_file),
        "SHOPMESH_GRPC_PORT": "0",
        "SHOPMESH_METRICS_PORT": "0",
        "MESH_TLS": "off",
        "SHOPMESH_KAFKA_BOOTSTRAP": NOWHERE,
        "SHOPMESH_ADDRESS_USERS": NOWHERE,
        "SHOPMESH_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "SHOPMESH_MONGODB_URL": "mongodb://127.0.0.1:1",
        "SHOPMESH_HEALTH_PROBE_INTERVAL_SECONDS": "0.05",
        **env,
    }
    return Runtime.from_env(service, values)


def without_storage(mesh_document: dict[str, Any], service: str = "inventory") -> dict[str, Any]:
    """The mesh with `service` storing and publishing nothing (no database needed)."""
    document = copy.deepcopy(mesh_document)
    document["services"][service].pop("storage")
    document["services"][service].pop("publishes")
    return document


async def test_the_store_is_the_kind_the_mesh_declares(tmp_path: Path, mesh_document: dict[str, Any]) -> None:
    orders = runtime_for(tmp_path, mesh_document, "orders")
    with pytest.raises(ConfigError, match="mesh.yaml declares storage kind mongo for orders"):
        await orders.postgres()
    store = orders.mongo()
    assert store.database.name == "orders"  # the declared database
    assert orders.mongo() is store
    inventory = runtime_for(tmp_path, mesh_document, "inventory")
    with pytest.raises(ConfigError, match="storage kind postgres for inventory: inventory has no MongoDB store"):
        inventory.mongo()
    postgres = await inventory.postgres()
    try:
        assert not await postgres.readiness()  # nothing listens: health follows the database
    finally:
        await postgres.pool.close()


async def test_a_relay_runs_only_for_a_service_that_publishes(tmp_path: Path, mesh_document: dict[str, Any]) -> None:
    publishing = runtime_for(tmp_path, mesh_document)
    await publishing.postgres()
    assert [type(relay).__name__ for relay in publishing._relays()[0]] == ["OutboxRelay"]
    assert publishing.registry.get_sample_value("outbox_relay_leader") == 0
    silent_mesh = copy.deepcopy(mesh_document)
    silent_mesh["services"]["inventory"].pop("publishes")
    silent = runtime_for(tmp_path, silent_mesh)
    await silent.postgres()
    assert silent._relays() == ([], [])
    assert silent.registry.get_sample_value("outbox_relay_leader") is None
    for runtime in (publishing, silent):
        await runtime._close()


async def test_consumers_read_only_declared_topics(tmp_path: Path, mesh_document: dict[str, Any]) -> None:
    runtime = runtime_for(tmp_path, mesh_document)
    with pytest.raises(ConfigError, match=r"inventory does not declare consuming \['payment-events'\]"):
        runtime.consumer("payments", Handlers(), topics=["payment-events"])
    with pytest.raises(ConfigError, match="consumers need the service.s store"):
        runtime.consumer("orders", Handlers(), topics=["order-events"])
    await runtime.postgres()
    consumer = runtime.consumer("orders", Handlers(), topics=["order-events"])
    assert consumer.name == "inventory.orders"
    await runtime._close()


def test_only_the_declared_issuer_verifies_with_its_own_keys(tmp_path: Path, mesh_document: dict[str, Any]) -> None:
    class Keys:
        def jwks(self) -> Mapping[str, Any]:
            return {"keys": []}

    class NoRevocations:
        async def is_revoked(self, token_id: str) -> bool:
            return False

    inventory = runtime_for(tmp_path, mesh_document)
    with pytest.raises(ConfigError, match="does not name inventory as the token issuer"):
        inventory.issuer_auth(Keys(), NoRevocations())
    users = runtime_for(tmp_path, mesh_document, "users")
    with pytest.raises(ConfigError, match="users issues the tokens"):
        _ = users.auth
    users.issuer_auth(Keys(), NoRevocations())
    no_feed = copy.deepcopy(mesh_document)
    no_feed["services"]["inventory"]["consumes"] = ["order-events"]
    with pytest.raises(ConfigError, match="inventory must consume user-events"):
        _ = runtime_for(tmp_path, no_feed).auth


async def test_the_jwks_call_is_built_from_the_mesh_declaration() -> None:
    mesh = load_mesh()
    assert mesh.auth is not None
    async with aio.insecure_channel(NOWHERE) as channel:
        source = IssuerJwks(channel, mesh, mesh.auth)
        # The generic call's types were found by name in the issuer's generated code.
        assert source._request.DESCRIPTOR.full_name == "shopmesh.user.v1.GetJwksRequest"


def test_the_platform_imports_no_service_stubs() -> None:
    offenders = []
    for path in PLATFORM.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name.startswith("shopmesh.") for name in names):
                offenders.append(f"{path.relative_to(PLATFORM)}: {names[0]}")
    assert offenders == []


class RecordingConsumer:
    """A consumer whose stop() notes what the server was doing at that moment."""

    def __init__(self, log: list[str]) -> None:
        self._log = log
        self._stopped = asyncio.Event()
        self.grpc_port = 0

    async def run(self) -> None:
        self._log.append("consumer running")
        await self._stopped.wait()

    async def stop(self) -> None:
        async with aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        self._log.append(
            f"consumer stopping, health {health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}"
        )
        self._stopped.set()
        self._log.append("consumer stopped")


class SlowInventory(SampleInventory):
    """GetProduct takes a while, so a call is in flight when the drain starts."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self._log = log
        self.call_started = asyncio.Event()

    async def GetProduct(self, request: inventory_pb2.GetProductRequest, context: Any) -> inventory_pb2.Product:
        self.call_started.set()
        await asyncio.sleep(2.0)
        self._log.append("call finished")
        return inventory_pb2.Product(id=request.id)


async def test_stop_drains_health_then_consumers_then_calls(tmp_path: Path, mesh_document: dict[str, Any]) -> None:
    log: list[str] = []
    runtime = runtime_for(tmp_path, without_storage(mesh_document), SHOPMESH_DRAIN_GRACE_SECONDS="10")
    consumer = RecordingConsumer(log)
    servicer = SlowInventory(log)
    binding = ServiceBinding.of(servicer, inventory_pb2, inventory_grpc, "InventoryService")
    serving = asyncio.create_task(runtime.serve([binding], consumers=[consumer]))
    # Consumers run before the server takes calls.
    assert await eventually(lambda: _serving_port(runtime), lambda port: port > 0, timeout=15)
    assert log == ["consumer running"]
    consumer.grpc_port = _serving_port_now(runtime)
    async with aio.insecure_channel(f"127.0.0.1:{consumer.grpc_port}") as channel:
        request = inventory_pb2.GetProductRequest(id="prod-1")
        call = asyncio.ensure_future(inventory_grpc.InventoryServiceStub(channel).GetProduct(request, timeout=30))
        await asyncio.wait_for(servicer.call_started.wait(), timeout=10)
        runtime.stop()
        await asyncio.wait_for(serving, timeout=30)
        assert (await call).id == "prod-1"
    assert log == [
        "consumer running",
        "consumer stopping, health NOT_SERVING",
        "consumer stopped",
        "call finished",
    ]


def _serving_port_now(runtime: Runtime) -> int:
    server = runtime.server
    return server.grpc_port if server is not None and server.metrics_port else 0


async def _serving_port(runtime: Runtime) -> int:
    """The gRPC port, once the server has started (its metrics port is bound last but one)."""
    return _serving_port_now(runtime)
