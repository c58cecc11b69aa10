"""The orphan reaper: releases reservations whose order does not exist.

Orders reserves stock, then stores the order with its OrderCreated event. If it
crashes in between, nobody will ever cancel that order, so its stock would be
held forever. The reaper releases an ACTIVE reservation whose OrderCreated has
not been seen (`Inventory.mark_order_seen`) within the grace period. It never
touches a reservation whose order exists: expiry of real orders is orders' call.
"Not seen" is only a candidate: before releasing, the reaper asks orders (GetOrder,
as the `inventory` identity), because an OrderCreated can be unpublished still when
orders was down longer than the grace. A real order is marked seen; when orders
cannot answer, nothing is released until a later round.
Every replica runs one; a PostgreSQL advisory lock lets one reap at a time.

It reaps only while the replica's order-events consumer has caught up (`may_reap`):
an OrderCreated still in Kafka, or not consumable because Kafka or inventory itself
was down longer than the grace, must not make a real order's reservation look
orphaned. (Found by the chaos test: inventory SIGKILLed and restarted reaped real
orders before its consumer replayed their OrderCreated, and their confirmations
then committed nothing.) With several replicas, each checks its own partitions only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shopmesh_inventory.config import InventoryConfig
from shopmesh_inventory.domain import Inventory, OrderExists, OrphanVerdict
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.inventory.reaper")


class OrphanReaper:
    """Run `run()` as a background task of the service."""

    def __init__(
        self, inventory: Inventory, config: InventoryConfig, may_reap: Callable[[], bool], order_exists: OrderExists
    ) -> None:
        self._inventory = inventory
        self._config = config
        self._may_reap = may_reap
        self._order_exists = order_exists

    async def run(self) -> None:
        await keep_running(
            "orphan reaper", self._reap_forever, logger, initial_backoff=self._config.reaper_interval_seconds
        )

    async def _reap_forever(self) -> None:
        while True:
            if self._may_reap():
                await self.reap_all()
            await asyncio.sleep(self._config.reaper_interval_seconds)

    async def reap_all(self) -> int:
        """Release every orphan there is now; returns how many."""
        reaped = 0
        grace = self._config.orphan_grace_seconds
        while (outcome := await self._inventory.reap_orphan(grace, self._order_exists)) is not None:
            if outcome.verdict is OrphanVerdict.UNDECIDED:
                logger.warning("orders could not tell whether an order exists; reaping later")
                break
            if outcome.verdict is OrphanVerdict.RELEASED:
                reaped += 1
                logger.info("released an orphan reservation", extra={"order_id": outcome.order_id})
            else:
                logger.info("a reservation's order exists; its events settle it", extra={"order_id": outcome.order_id})
        return reaped
