"""Publish a transition log's events to Kafka: one relay per service at a time (`SlotLease`).

Each time it takes the lease, the relay first flags the transitions a previous
version wrote without a `published` flag (`MongoOutboxStore.backfill`). While
holding the lease, it takes pending events in publish order, sends each with
the idempotent acks=all producer and, once the broker acknowledged it, inserts
its published marker and sets its flag. A crash between send and flag
re-publishes that event; consumers deduplicate by event id. When Kafka is down the loop backs off
and retries; writers are never affected (the log is the outbox).

Metrics (on the registry given, with the PostgreSQL relay's names):
`outbox_pending_events` (the backlog its last scan found), `outbox_relay_leader`
(1 while this replica holds the lease) and `outbox_published_total`.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_platform.docstore.lease import LeaseLost, SlotLease
from shopmesh_platform.docstore.outbox import MongoOutboxStore
from shopmesh_platform.events.producer import EventProducer
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.docstore.relay")
# Each poll decodes every pending transition (to order them), so a backlog is published in large batches.
BATCH_SIZE = 500


class MongoRelay:
    """Relay of one service's transition log; run `run()` as a background task."""

    def __init__(
        self,
        store: MongoOutboxStore,
        lease: SlotLease,
        kafka: KafkaConfig,
        *,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._store = store
        self._lease = lease
        self._kafka = kafka
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self.published = 0
        registry = registry or CollectorRegistry()
        self._pending = Gauge("outbox_pending_events", "Outbox events waiting to be published.", registry=registry)
        self._leader = Gauge("outbox_relay_leader", "1 while this relay holds the service's lease.", registry=registry)
        self._published = Counter("outbox_published_total", "Outbox events published.", registry=registry)

    async def run(self) -> None:
        await keep_running(
            "mongo outbox relay",
            lambda: self._lease.run_while_held(self._relay),
            logger,
            initial_backoff=self._poll_interval,
            max_backoff=self._max_backoff,
        )

    async def _relay(self) -> None:
        backfilled = await self._store.backfill()
        if backfilled:
            logger.info("flagged transitions written before the published flag", extra={"count": backfilled})
        producer = EventProducer(self._kafka, client_id=f"{self._lease.holder}-relay")
        await producer.start()
        self._leader.set(1)
        try:
            while True:
                published = await self._publish_batch(producer)
                self._pending.set(max(self._store.last_backlog - published, 0))
                if published == 0:
                    await self._store.wait_for_events(self._poll_interval)
        finally:
            self._leader.set(0)
            await producer.stop()

    async def _publish_batch(self, producer: EventProducer) -> int:
        count = 0
        async for event in self._store.pending(BATCH_SIZE):
            # Never start a send once the lease may be over: the successor may already be publishing.
            if not self._lease.valid():
                raise LeaseLost(f"{self._lease.service}: lease ended during a batch")
            await producer.send(event.envelope())
            await self._store.mark_published(event)
            self.published += 1
            self._published.inc()
            count += 1
        return count
