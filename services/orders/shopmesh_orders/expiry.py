"""The expiry loop: orders alone decides when an unpaid order expires (DESIGN §5).

Every replica runs one. Each round asks the current-state cache for PENDING
orders past their deadline and cancels each through the transition log with the
cause `expire:<order id>`, so an order expires at most once and an expiry racing
a payment or the owner's cancel loses or wins as one insert decides. Rounds are
jittered so replicas do not all scan at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import random

from shopmesh_orders.config import OrdersConfig
from shopmesh_orders.domain import Orders
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.orders.expiry")


class ExpiryLoop:
    """Run `run()` as a background task of the service."""

    def __init__(self, orders: Orders, config: OrdersConfig) -> None:
        self._orders = orders
        self._interval = config.expiry_scan_seconds

    async def run(self) -> None:
        await keep_running("order expiry", self._expire_forever, logger, initial_backoff=self._interval)

    async def _expire_forever(self) -> None:
        while True:
            expired = await self._orders.expire_due()
            if expired:
                logger.info("expired unpaid orders", extra={"count": expired})
            # Between 0.5 and 1.5 intervals: replicas drift apart instead of scanning in step.
            await asyncio.sleep(self._interval * (0.5 + random.random()))
