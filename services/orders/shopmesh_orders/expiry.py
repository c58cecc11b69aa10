"""The expiry loop: orders alone decides when an unpaid order expires (DESIGN §5).

Every replica runs one. Each round asks the current-state cache for PENDING
orders past their deadline and cancels each through the transition log with the
cause `expire:<order id>`, so an order expires at most once and an expiry racing
a payment or the owner's cancel loses or wins as one insert decides. Rounds are
jittered so replicas do not all scan at the same moment.

About once a minute a round also rewrites the listing-cache entries a previous
version's replica wrote (a rolling deploy), so they are not missed by the
expiry scan and the listings until the next restart rebuilds the cache.
"""

from __future__ import annotations

import asyncio
import logging
import random

from shopmesh_orders.config import OrdersConfig
from shopmesh_orders.domain import Orders
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.orders.expiry")
RESHAPE_SECONDS = 60.0


class ExpiryLoop:
    """Run `run()` as a background task of the service."""

    def __init__(self, orders: Orders, config: OrdersConfig) -> None:
        self._orders = orders
        self._interval = config.expiry_scan_seconds

    async def run(self) -> None:
        await keep_running("order expiry", self._expire_forever, logger, initial_backoff=self._interval)

    async def _expire_forever(self) -> None:
        reshape_every = max(1, round(RESHAPE_SECONDS / self._interval))
        rounds = 0
        while True:
            if rounds % reshape_every == 0 and (reshaped := await self._orders.reshape_cache()):
                logger.info("rewrote cache entries of an older shape", extra={"count": reshaped})
            rounds += 1
            expired = await self._orders.expire_due()
            if expired:
                logger.info("expired unpaid orders", extra={"count": expired})
            # Between 0.5 and 1.5 intervals: replicas drift apart instead of scanning in step.
            await asyncio.sleep(self._interval * (0.5 + random.random()))
