"""Business metrics of the inventory service, on the server's registry."""

from __future__ import annotations

import enum

from prometheus_client import CollectorRegistry, Counter


class ReservationOutcome(enum.Enum):
    """How a ReserveStock call ended (the `outcome` label)."""

    RESERVED = "reserved"
    REPLAYED = "replayed"
    INSUFFICIENT_STOCK = "insufficient_stock"
    PRODUCT_UNAVAILABLE = "product_unavailable"
    MIXED_CURRENCIES = "mixed_currencies"
    CONFLICTING_RETRY = "conflicting_retry"
    PRICE_MISMATCH = "price_mismatch"


class InventoryMetrics:
    """Counters the domain reports to; pass the server's registry (or a private one in tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._reservations = Counter(
            "inventory_reservations_total", "ReserveStock calls by outcome.", ["outcome"], registry=registry
        )
        self._stock_changes = Counter(
            "inventory_settlements_total",
            "Reservations released, committed, returned or reaped (applied changes only).",
            ["kind"],
            registry=registry,
        )
        for outcome in ReservationOutcome:
            self._reservations.labels(outcome=outcome.value)

    def reservation(self, outcome: ReservationOutcome) -> None:
        self._reservations.labels(outcome=outcome.value).inc()

    def settlement(self, kind: str) -> None:
        self._stock_changes.labels(kind=kind).inc()
