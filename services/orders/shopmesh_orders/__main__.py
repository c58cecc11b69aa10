"""Entry point: `python -m shopmesh_orders` (settings from the environment).

Beyond the platform's settings and SHOPMESH_MONGODB_*: SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER,
SHOPMESH_ORDERS_EXPIRY_SECONDS and SHOPMESH_ORDERS_EXPIRY_SCAN_SECONDS (shopmesh_orders.config).
Beside the server run the relay of the orders' transition log to `order-events`
and the expiry loop.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymongo.asynchronous.database import AsyncDatabase

from shopmesh_orders.config import OrdersConfig
from shopmesh_orders.domain import Orders
from shopmesh_orders.expiry import ExpiryLoop
from shopmesh_orders.metrics import OrdersMetrics
from shopmesh_orders.servicer import OrderServicer, binding
from shopmesh_orders.stock import InventoryStock
from shopmesh_orders.store import OrderStore
from shopmesh_platform.docstore.records import Document
from shopmesh_platform.runner import MongoService, ServiceRuntime, run_service, serve_with_mongo


async def serve(env: Mapping[str, str]) -> None:
    config = OrdersConfig.from_env(env)

    def build(runtime: ServiceRuntime, database: AsyncDatabase[Document]) -> MongoService:
        store = OrderStore(database)
        orders = Orders(store, InventoryStock(runtime.channel("inventory")), config, OrdersMetrics(runtime.registry))
        runtime.add_background(ExpiryLoop(orders, config).run)
        return MongoService([binding(OrderServicer(orders))], prepare=store.prepare, outbox=store.log)

    await serve_with_mongo("orders", env, build)


if __name__ == "__main__":
    run_service(serve)
