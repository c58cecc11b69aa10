"""A small InventoryService used to exercise the platform (not a real inventory).

Product ids select behaviour: `prod-slow` sleeps, `prod-slow-then-unavailable`
sleeps and, cancelled, raises UNAVAILABLE (as a client library may turn a
cancellation into its error), `prod-own-timeout` raises a TimeoutError of its
own, `prod-missing` raises a domain NotFound, `prod-crash` raises an unexpected
exception, `prod-flaky-*` is UNAVAILABLE for its first two attempts,
`prod-check` lets a database check violation (with the row in its detail)
escape, and `prod-db-crash` wraps one in an unexpected exception, `prod-db-down`
loses its database connection. CreateProduct is always UNAVAILABLE and counts
its attempts, to show that non-idempotent methods are not retried.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from typing import Any

import asyncpg
from pymongo.errors import ServerSelectionTimeoutError

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.config import PlatformConfig
from shopmesh_platform.errors import NotFound, Unavailable
from shopmesh_platform.server import ServiceBinding, ShopmeshServer, create_server

SLOW_SECONDS = 1.5
# What PostgreSQL sends for a row that breaks a check (parsed by asyncpg as it parses the wire).
SECRET_ROW = "Failing row contains (ada@localhost, $argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA)"
CHECK_VIOLATION_FIELDS = {
    "C": "23514",
    "M": 'new row for relation "users" violates check constraint "users_email_format"',
    "D": SECRET_ROW,
    "n": "users_email_format",
    "t": "users",
}


class SampleInventory(inventory_grpc.InventoryServiceServicer):
    def __init__(self) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()
        self.answered: collections.Counter[str] = collections.Counter()

    async def GetProduct(self, request: inventory_pb2.GetProductRequest, context: Any) -> inventory_pb2.Product:
        self.attempts[request.id] += 1
        if request.id.startswith("prod-slow"):
            await self._slow(request.id)
        elif request.id == "prod-own-timeout":
            raise TimeoutError("the dependency did not answer in time")
        elif request.id == "prod-missing":
            raise NotFound(
                f"no product {request.id}",
                reason="PRODUCT_NOT_FOUND",
                domain="inventory",
                metadata={"product_id": request.id},
            )
        elif request.id == "prod-crash":
            raise RuntimeError("secret internals: db password is hunter2")
        elif request.id == "prod-check":
            raise asyncpg.PostgresError.new(CHECK_VIOLATION_FIELDS)
        elif request.id == "prod-db-gone":
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        elif request.id == "prod-mongo-gone":
            raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")
        elif request.id == "prod-db-crash":
            try:
                raise asyncpg.PostgresError.new(CHECK_VIOLATION_FIELDS)
            except asyncpg.PostgresError as exc:
                raise RuntimeError("could not store the product") from exc
        elif request.id == "prod-db-down":
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        elif request.id.startswith("prod-flaky") and self.attempts[request.id] <= 2:
            raise Unavailable("warming up", reason="WARMING_UP", domain="inventory")
        self.answered[request.id] += 1
        return inventory_pb2.Product(id=request.id, name="Sample", price=9.99, currency="USD")

    @staticmethod
    async def _slow(product_id: str) -> None:
        try:
            await asyncio.sleep(SLOW_SECONDS)
        except asyncio.CancelledError:
            if product_id == "prod-slow-then-unavailable":
                raise Unavailable("the dependency call was cut", reason="CUT", domain="inventory") from None
            raise

    async def CreateProduct(self, request: inventory_pb2.CreateProductRequest, context: Any) -> inventory_pb2.Product:
        self.attempts["CreateProduct"] += 1
        raise Unavailable("warming up", reason="WARMING_UP", domain="inventory")

    async def ListProducts(
        self, request: inventory_pb2.ListProductsRequest, context: Any
    ) -> inventory_pb2.ListProductsResponse:
        self.attempts["ListProducts"] += 1
        raise Unavailable("warming up", reason="WARMING_UP", domain="inventory")


def build(config: PlatformConfig, servicer: SampleInventory, **kwargs: Any) -> ShopmeshServer:
    binding = ServiceBinding.of(servicer, inventory_pb2, inventory_grpc, "InventoryService")
    return create_server(config, [binding], **kwargs)


async def _main() -> None:
    """Run as a process (for the SIGTERM test); prints its ports once serving."""
    from shopmesh_platform.logs import configure_logging

    config = PlatformConfig.from_env("inventory")
    configure_logging("inventory", config.log_level)
    server = build(config, SampleInventory())
    await server.serve(lambda s: print(f"PORTS {s.grpc_port} {s.metrics_port}", flush=True))


if __name__ == "__main__":
    asyncio.run(_main())
    sys.exit(0)
