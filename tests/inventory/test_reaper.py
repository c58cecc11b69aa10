"""The orphan reaper waits for the order-events consumer: a reservation whose OrderCreated is still
in Kafka is no orphan.

Found by the chaos test (tests/integration/test_chaos.py): inventory SIGKILLed and
restarted reaped real orders' reservations before its consumer had replayed their
OrderCreated; their OrderConfirmed then committed nothing, and the stock stayed on
the shelf for orders that were paid.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from shopmesh_inventory.config import InventoryConfig
from shopmesh_inventory.domain import OrderExists, OrphanVerdict, ReapOutcome
from shopmesh_inventory.reaper import OrphanReaper
from shopmesh_platform.events.consumer import ConsumerMetrics, ConsumerSettings, EventConsumer, Handlers
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.mesh import load_mesh


class Orphans:
    """The inventory port the reaper uses: hands out its candidates with orders' verdict, counting the calls.

    It applies the verdict as Inventory.reap_orphan does: a released or existing order
    is no candidate any more; an undecided one stays.
    """

    def __init__(self, *order_ids: str) -> None:
        self.left = list(order_ids)
        self.released: list[str] = []
        self.calls = 0

    async def reap_orphan(self, grace_seconds: float, order_exists: OrderExists) -> ReapOutcome | None:
        self.calls += 1
        if not self.left:
            return None
        order_id = self.left[-1]
        exists = await order_exists(order_id)
        if exists is None:
            return ReapOutcome(order_id, OrphanVerdict.UNDECIDED)
        self.left.pop()
        if exists:
            return ReapOutcome(order_id, OrphanVerdict.ORDER_EXISTS)
        self.released.append(order_id)
        return ReapOutcome(order_id, OrphanVerdict.RELEASED)


async def no_such_order(order_id: str) -> bool | None:
    return False


def reaper(orphans: Orphans, may_reap: Any, order_exists: OrderExists = no_such_order) -> OrphanReaper:
    config = InventoryConfig.from_env({"SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS": "0.1"}, load_mesh())
    return OrphanReaper(orphans, config, may_reap, order_exists)  # type: ignore[arg-type]


async def run_for_a_while(subject: OrphanReaper) -> None:
    task = asyncio.create_task(subject.run())
    # Several reaper intervals (0.1 s): enough rounds for it to have reaped if it would.
    await asyncio.sleep(0.5)
    task.cancel()


async def test_it_reaps_nothing_until_the_consumer_has_caught_up() -> None:
    orphans = Orphans("o-1", "o-2")
    caught_up = False
    subject = reaper(orphans, lambda: caught_up)
    await run_for_a_while(subject)
    assert (orphans.calls, orphans.left) == (0, ["o-1", "o-2"])
    caught_up = True
    await run_for_a_while(subject)
    assert orphans.left == [] and orphans.calls >= 3
    assert sorted(orphans.released) == ["o-1", "o-2"]


async def test_orders_decides_what_is_an_orphan_and_undecided_releases_nothing() -> None:
    """An OrderCreated can be unpublished still (orders down longer than the grace): orders is asked first."""
    answers: dict[str, bool | None] = {"real": True, "ghost": False, "unknown": None}

    async def order_exists(order_id: str) -> bool | None:
        return answers[order_id]

    orphans = Orphans("unknown", "ghost", "real")
    subject = reaper(orphans, lambda: True, order_exists)
    assert await subject.reap_all() == 1
    # "real" was kept (marked seen), "ghost" released, then "unknown" stopped the round.
    assert orphans.released == ["ghost"] and orphans.left == ["unknown"]
    answers["unknown"] = False
    assert await subject.reap_all() == 1
    assert orphans.released == ["ghost", "unknown"] and orphans.left == []


class Partitions:
    """What the consumer reads from aiokafka for its lag: assignment, high watermarks, positions."""

    def __init__(self, offsets: dict[int, tuple[int | None, int]]) -> None:
        self.offsets = {TopicPartition("order-events", p): pair for p, pair in offsets.items()}

    def assignment(self) -> set[TopicPartition]:
        return set(self.offsets)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.offsets[partition][0]

    async def position(self, partition: TopicPartition) -> int:
        return self.offsets[partition][1]


async def test_a_consumer_is_caught_up_only_with_every_partition_read_to_its_end() -> None:
    consumer: EventConsumer[None] = EventConsumer(
        KafkaConfig.from_env({"SHOPMESH_KAFKA_BOOTSTRAP": "127.0.0.1:9"}),
        settings=ConsumerSettings(group="tests.lag", topics=("order-events",)),
        handlers=Handlers(),
        inbox=None,  # type: ignore[arg-type]
        catalog=TopicCatalog.from_names(["order-events"]),
        metrics=ConsumerMetrics(CollectorRegistry()),
    )
    assert not consumer.caught_up  # never connected
    cases = [
        ({}, False),  # nothing assigned yet
        ({0: (5, 5), 1: (0, 0)}, True),
        ({0: (5, 5), 1: (3, 2)}, False),  # an event not read yet
        ({0: (5, 5), 1: (None, 0)}, False),  # no high watermark known yet
    ]
    for offsets, expected in cases:
        await consumer._update_lag(Partitions(offsets))  # type: ignore[arg-type]
        assert consumer.caught_up is expected, offsets
