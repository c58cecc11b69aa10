"""Entry point: `python -m shopmesh_orders` (settings from the environment).

Beyond the platform's settings and SHOPMESH_MONGODB_*: SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER,
SHOPMESH_ORDERS_EXPIRY_SECONDS and SHOPMESH_ORDERS_EXPIRY_SCAN_SECONDS (shopmesh_orders.config).
Beside the server run the relay of the orders' transition log to `order-events`,
the expiry loop and the payment-events consumer (shopmesh_orders.payment_events).
"""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_orders.config import OrdersConfig
from shopmesh_orders.domain import Orders
from shopmesh_orders.expiry import ExpiryLoop
from shopmesh_orders.metrics import OrdersMetrics
from shopmesh_orders.payment_events import CONSUMER, payment_event_handlers
from shopmesh_orders.servicer import OrderServicer, binding
from shopmesh_orders.stock import InventoryStock
from shopmesh_orders.store import OrderStore
from shopmesh_platform.events.topics import PAYMENT_EVENTS
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime


async def serve(env: Mapping[str, str]) -> None:
    config = OrdersConfig.from_env(env)
    runtime = Runtime.from_env("orders", env)
    store = OrderStore(runtime.mongo().database)
    runtime.relay_transitions(store.log)
    orders = Orders(store, InventoryStock(runtime.channel("inventory")), config, OrdersMetrics(runtime.registry))
    payment_events = runtime.consumer(CONSUMER, payment_event_handlers(orders), topics=[PAYMENT_EVENTS])
    await runtime.serve(
        [binding(OrderServicer(orders))],
        consumers=[payment_events],
        workers=[ExpiryLoop(orders, config)],
        prepare=[store],
    )


if __name__ == "__main__":
    run_service(serve)
