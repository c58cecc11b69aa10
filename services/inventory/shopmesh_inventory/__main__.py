"""Entry point: `python -m shopmesh_inventory` (settings from the environment).

Beyond the platform's settings: SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS and
SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS (shopmesh_inventory.config). Beside the
server run the orphan reaper and the order-events consumer (shopmesh_inventory.order_events).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from shopmesh_inventory.config import InventoryConfig
from shopmesh_inventory.domain import Inventory
from shopmesh_inventory.metrics import InventoryMetrics
from shopmesh_inventory.order_events import order_events_consumer
from shopmesh_inventory.reaper import OrphanReaper
from shopmesh_inventory.servicer import InventoryServicer, binding
from shopmesh_platform.runner import ServiceRuntime, run_service, serve_with_postgres
from shopmesh_platform.server import ServiceBinding


async def serve(env: Mapping[str, str]) -> None:
    config = InventoryConfig.from_env(env)

    def build(runtime: ServiceRuntime, pool: asyncpg.Pool) -> Sequence[ServiceBinding]:
        inventory = Inventory(pool, InventoryMetrics(runtime.registry))
        runtime.add_background(OrphanReaper(inventory, config).run)
        runtime.add_background(order_events_consumer(inventory, pool, runtime.kafka, runtime.registry).run)
        return [binding(InventoryServicer(inventory))]

    await serve_with_postgres("inventory", env, build)


if __name__ == "__main__":
    run_service(serve)
