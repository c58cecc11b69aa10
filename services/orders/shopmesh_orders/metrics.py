"""Business metrics of the orders service, on the server's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shopmesh_orders.records import OrderStatus

# Outcomes of the stock reservation behind CreateOrder (the `outcome` label).
RESERVATION_OUTCOMES = (
    "reserved",
    "replayed",
    "insufficient_stock",
    "price_mismatch",
    "product_unavailable",
    "refused",
    "inventory_unavailable",
)


class OrdersMetrics:
    """Counters the domain reports to; pass the server's registry (or a private one in tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._orders = Counter(
            "orders_total",
            "Orders that entered each status (created PENDING, then each change).",
            ["status"],
            registry=registry,
        )
        self._reservations = Counter(
            "orders_reservations_total",
            "Stock reservations asked for by CreateOrder, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self._expired = Counter("orders_expired_total", "Unpaid orders cancelled at their deadline.", registry=registry)
        for status in OrderStatus:
            self._orders.labels(status=status.value)
        for outcome in RESERVATION_OUTCOMES:
            self._reservations.labels(outcome=outcome)

    def entered(self, status: OrderStatus) -> None:
        self._orders.labels(status=status.value).inc()

    def reservation(self, outcome: str) -> None:
        self._reservations.labels(outcome=outcome).inc()

    def expired(self) -> None:
        self._expired.inc()
