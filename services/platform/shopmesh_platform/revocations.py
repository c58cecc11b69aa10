"""The deny-list of revoked token ids, fed by `SessionRevoked` events from Kafka.

No service reads the users database: each keeps revoked `jti`s in memory until
the token would have expired anyway. The feed reads every partition of
`user-events` in a consumer group of its own that never commits (every
instance must see every revocation), starting at the oldest event that can still matter: now minus the
longest token lifetime. Kafka being down delays the feed; it never stops the
service from serving.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.kafka import KafkaConfig, header
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.revocations")
USER_EVENTS_TOPIC = "user-events"


def token_id_hash(token_id: str) -> str:
    """How a token id travels and is stored: sha256 hex, never the id itself."""
    return hashlib.sha256(token_id.encode()).hexdigest()


class RevocationList:
    """Revoked token ids (as hashes) and when each may be forgotten (its token's expiry)."""

    def __init__(self) -> None:
        self._expires_at: dict[str, float] = {}

    def revoke_hash(self, hashed_token_id: str, expires_at: float) -> None:
        if expires_at > time.time():
            self._expires_at[hashed_token_id] = expires_at

    def revoke(self, token_id: str, expires_at: float) -> None:
        self.revoke_hash(token_id_hash(token_id), expires_at)

    def is_revoked(self, token_id: str) -> bool:
        hashed = token_id_hash(token_id)
        expires_at = self._expires_at.get(hashed)
        if expires_at is None:
            return False
        if expires_at <= time.time():
            del self._expires_at[hashed]
            return False
        return True

    def prune(self) -> None:
        now = time.time()
        for token_id in [t for t, exp in self._expires_at.items() if exp <= now]:
            del self._expires_at[token_id]

    def __len__(self) -> int:
        return len(self._expires_at)


class RevocationFeed:
    """Consumes `SessionRevoked` into a RevocationList; run `run()` as a task."""

    def __init__(self, kafka: KafkaConfig, revocations: RevocationList, *, lookback_seconds: float) -> None:
        self._kafka = kafka
        self._revocations = revocations
        self._lookback = lookback_seconds

    async def run(self) -> None:
        await keep_running("revocation feed", self._consume, logger)

    async def _consume(self) -> None:
        # A group of its own (never committed): every instance sees every partition.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            enable_auto_commit=False,
            group_id=f"revocations-{uuid.uuid4()}",
            auto_offset_reset="latest",
            request_timeout_ms=self._kafka.request_timeout_ms,
            **self._kafka.client_options(),
        )
        await consumer.start()
        try:
            consumer.subscribe([USER_EVENTS_TOPIC], listener=_SeekToLookback(consumer, self._lookback))
            async for record in consumer:
                if header(record.headers or (), "event-type") != user_events.SessionRevoked.DESCRIPTOR.full_name:
                    continue
                event = user_events.SessionRevoked.FromString(record.value)
                self._revocations.revoke_hash(event.token_id_hash, event.expires_at.ToSeconds())
                self._revocations.prune()
        finally:
            await consumer.stop()


class _SeekToLookback(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, start each partition at the first event that can still matter."""

    def __init__(self, consumer: AIOKafkaConsumer, lookback_seconds: float) -> None:
        self._consumer = consumer
        self._lookback = lookback_seconds

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        since_ms = int((time.time() - self._lookback) * 1000)
        offsets = await self._consumer.offsets_for_times({tp: since_ms for tp in assigned})
        for tp in assigned:
            found = offsets.get(tp)
            if found is None:
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, found.offset)
