"""Entry point: `python -m shopmesh_inventory` (settings from the environment).

Beyond the platform's settings: SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS and
SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS (shopmesh_inventory.config). Beside the
server run the orphan reaper and the order-events consumer (shopmesh_inventory.order_events).
"""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_inventory.config import InventoryConfig
from shopmesh_inventory.domain import Inventory
from shopmesh_inventory.metrics import InventoryMetrics
from shopmesh_inventory.order_events import CONSUMER, order_event_handlers
from shopmesh_inventory.orders_client import GrpcOrderExistence
from shopmesh_inventory.reaper import OrphanReaper
from shopmesh_inventory.servicer import InventoryServicer, binding
from shopmesh_platform.events.topics import ORDER_EVENTS
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env("inventory", env)
    config = InventoryConfig.from_env(env, runtime.config.mesh)
    postgres = await runtime.postgres()
    inventory = Inventory(postgres.pool, InventoryMetrics(runtime.registry))
    order_events = runtime.consumer(CONSUMER, order_event_handlers(inventory), topics=[ORDER_EVENTS])
    await runtime.serve(
        [binding(InventoryServicer(inventory))],
        consumers=[order_events],
        workers=[
            OrphanReaper(
                inventory, config, lambda: order_events.caught_up, GrpcOrderExistence(runtime.channel("orders"))
            )
        ],
    )


if __name__ == "__main__":
    run_service(serve)
