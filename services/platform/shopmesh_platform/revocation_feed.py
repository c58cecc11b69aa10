"""Feeds the deny-list (shopmesh_platform.revocations) from `user-events` on Kafka.

Every instance reads every partition itself, with no consumer group and no
commits: each must see every revocation. Each time the feed (re)starts it

1. asks the issuer how long its tokens live (`replay_window`: the lifetime the
   users service publishes in its JWKS, plus a margin for clock skew); a
   revocation published earlier concerns a token that has expired anyway,
2. notes the end offset of every partition,
3. seeks each partition to the first record of that window (to the beginning
   if the issuer publishes no lifetime: slower, never wrong),
4. reads on, and marks the list loaded once its position has reached the end
   offsets it noted; until then calls that need a user token fail closed.

A record typed `SessionRevoked` that cannot be decoded is counted
(`revocation_records_skipped_total`), logged by its position (never its
content) and skipped: one bad record never stalls the feed. While Kafka is
unreachable the feed retries with backoff and the list stays as it is: not
loaded if it never was (user calls UNAVAILABLE), loaded if it was (revocations
published meanwhile arrive when Kafka is back; those not yet published wait in
the users service's outbox). Health never follows Kafka (DESIGN §7); the
`revocations_loaded` gauge shows the state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.retry import keep_running
from shopmesh_platform.revocations import RevocationList, UndecodableRecord, decode_revocation
from shopmesh_platform.tokens import JwksSource, published_token_lifetime

logger = logging.getLogger("shopmesh.revocations")
USER_EVENTS_TOPIC = "user-events"
# Issuer, broker and this host may disagree on the time by this much.
CLOCK_SKEW_MARGIN_SECONDS = 60.0

# Seconds back from now that can hold a revocation that still matters; None: all of the topic.
ReplayWindow = Callable[[], Awaitable[float | None]]


def issuer_replay_window(jwks_source: JwksSource) -> ReplayWindow:
    """The replay window from the token lifetime the issuer publishes in its JWKS."""

    async def window() -> float | None:
        lifetime = published_token_lifetime(await jwks_source())
        if lifetime is None:
            logger.warning("the issuer publishes no token lifetime; replaying all of %s", USER_EVENTS_TOPIC)
            return None
        return lifetime + CLOCK_SKEW_MARGIN_SECONDS

    return window


class RevocationFeed:
    """Consumes `SessionRevoked` into a RevocationList; run `run()` as a task."""

    def __init__(
        self,
        kafka: KafkaConfig,
        revocations: RevocationList,
        replay_window: ReplayWindow,
        registry: CollectorRegistry,
        *,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._kafka = kafka
        self._revocations = revocations
        self._replay_window = replay_window
        self._max_backoff = max_backoff_seconds
        self._skipped = Counter(
            "revocation_records_skipped_total",
            "Records typed SessionRevoked that could not be decoded and were skipped.",
            registry=registry,
        )
        loaded = Gauge(
            "revocations_loaded",
            "1 once the deny-list has replayed every revocation that can still matter (user calls are served).",
            registry=registry,
        )
        loaded.set_function(lambda: float(revocations.loaded))
        active = Gauge("revocations_active", "Revoked tokens on the deny-list, not yet expired.", registry=registry)
        active.set_function(lambda: float(len(revocations)))

    async def run(self) -> None:
        await keep_running("revocation feed", self._consume, logger, max_backoff=self._max_backoff)

    def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Decode one record and apply it; an undecodable one is counted and skipped."""
        try:
            revocation = decode_revocation(record.headers, record.value)
        except UndecodableRecord as problem:
            self._skipped.inc()
            logger.warning(
                "undecodable revocation record skipped",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "problem": str(problem),
                },
            )
            return
        if revocation is not None:
            self._revocations.apply(revocation)

    async def _consume(self) -> None:
        window = await self._replay_window()
        consumer = AIOKafkaConsumer(
            USER_EVENTS_TOPIC,
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=None,  # no group: every partition, nothing committed
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a replay start already deleted by retention: the oldest left
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await consumer.start()
            partitions = sorted(consumer.assignment())
            if not partitions:
                raise RuntimeError(f"topic {USER_EVENTS_TOPIC} has no partitions")
            end_offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            await _seek_to_window(consumer, partitions, window, end_offsets)
            logger.info(
                "replaying revocations",
                extra={"window_s": window, "end_offsets": {tp.partition: end for tp, end in end_offsets.items()}},
            )
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        self.handle(record)
                self._revocations.prune()
                if not self._revocations.loaded and await _reached(consumer, end_offsets):
                    self._revocations.mark_loaded()
                    logger.info("revocations loaded", extra={"revoked_tokens": len(self._revocations)})
        finally:
            await consumer.stop()


async def _seek_to_window(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    window: float | None,
    end_offsets: dict[TopicPartition, int],
) -> None:
    if window is None:
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        return
    since_ms = max(0, int((time.time() - window) * 1000))
    found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    for tp in partitions:
        first = found.get(tp)
        # No record that recent: nothing in this partition matters; read what comes next.
        consumer.seek(tp, first.offset if first is not None else end_offsets[tp])


async def _reached(consumer: AIOKafkaConsumer, end_offsets: dict[TopicPartition, int]) -> bool:
    for tp, end in end_offsets.items():
        if await consumer.position(tp) < end:
            return False
    return True
