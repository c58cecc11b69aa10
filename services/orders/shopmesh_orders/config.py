"""Settings of the orders service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopmesh_platform.config import EnvReader


@dataclass(frozen=True)
class OrdersConfig:
    """SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER: how many PENDING (unpaid) orders one
    customer may hold at once (default 5; OWASP API6: nobody hoards stock with unpaid
    orders). SHOPMESH_ORDERS_EXPIRY_SECONDS: how long an order may stay unpaid before
    orders cancels it as `reservation_expired` (default 900). SHOPMESH_ORDERS_EXPIRY_SCAN_SECONDS:
    how often each replica looks for expired orders (default 5, jittered)."""

    max_pending_per_customer: int
    expiry_seconds: float
    expiry_scan_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OrdersConfig:
        read = EnvReader(env)
        return cls(
            max_pending_per_customer=read.integer(
                "SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER", 5, minimum=1, maximum=1000
            ),
            expiry_seconds=read.number("SHOPMESH_ORDERS_EXPIRY_SECONDS", 900.0, minimum=1.0, maximum=7 * 24 * 3600),
            expiry_scan_seconds=read.number("SHOPMESH_ORDERS_EXPIRY_SCAN_SECONDS", 5.0, minimum=0.1, maximum=3600.0),
        )
