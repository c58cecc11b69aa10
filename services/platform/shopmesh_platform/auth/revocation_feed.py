"""Feeds the deny-list (auth.revocations) from the issuer's revocation events.

The feed is a broadcast consumer (shopmesh_platform.events.broadcast) of the
topic and event type mesh.yaml's `auth` section names: every instance reads
every partition, with no consumer group and no commits, since each must see
every revocation. Each time it (re)connects it

1. asks the issuer how long its tokens live (`IssuerReplayWindow`: the lifetime
   the issuer publishes in its JWKS, plus a margin for clock skew); a
   revocation published earlier concerns a token that has expired anyway,
2. replays the topic from that far back (from the beginning if the issuer
   publishes no lifetime: slower, never wrong) up to the end offsets it saw
   when it connected, and then marks the list loaded; until then calls that
   need a user token fail closed.

A revocation record that cannot be decoded is counted
(`revocation_records_skipped_total`), logged by its position (never its
content) and skipped: one bad record never stalls the feed. While Kafka is
unreachable the feed retries with backoff and the list stays as it is: not
loaded if it never was (user calls UNAVAILABLE), loaded if it was (revocations
published meanwhile arrive when Kafka is back; those not yet published wait in
the issuer's outbox). Health never follows Kafka (DESIGN §7); the
`revocations_loaded` gauge shows the state.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_platform.auth.revocations import RevocationList, revocation_of
from shopmesh_platform.auth.tokens import JwksSource, published_token_lifetime
from shopmesh_platform.events.broadcast import BroadcastConsumer, BroadcastSettings
from shopmesh_platform.events.consumer import ConsumerMetrics, EventContext, Handlers
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.mesh import AuthDecl
from shopmesh_platform.protos import message_class

logger = logging.getLogger("shopmesh.revocations")
# Issuer, broker and this host may disagree on the time by this much.
CLOCK_SKEW_MARGIN_SECONDS = 60.0


class IssuerReplayWindow:
    """The replay window from the token lifetime the issuer publishes in its JWKS (a ReplayStart)."""

    def __init__(self, jwks_source: JwksSource) -> None:
        self._jwks_source = jwks_source

    async def seconds_back(self) -> float | None:
        lifetime = published_token_lifetime(await self._jwks_source())
        if lifetime is None:
            logger.warning("the issuer publishes no token lifetime; replaying all of its revocations")
            return None
        return lifetime + CLOCK_SKEW_MARGIN_SECONDS


class RevocationFeed:
    """Consumes the issuer's revocation events into a RevocationList; `run()` until `stop()`."""

    def __init__(
        self,
        kafka: KafkaConfig,
        auth: AuthDecl,
        revocations: RevocationList,
        jwks_source: JwksSource,
        *,
        service: str,
        catalog: TopicCatalog,
        registry: CollectorRegistry,
        metrics: ConsumerMetrics,
    ) -> None:
        self._revocations = revocations
        self._skipped = Counter(
            "revocation_records_skipped_total",
            "Revocation records that could not be decoded and were skipped.",
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
        handlers: Handlers[None] = Handlers()
        handlers.register(message_class(auth.revocation_event), self._apply)
        self.consumer = BroadcastConsumer(
            kafka,
            settings=BroadcastSettings(name=f"{service}.revocations", topics=(auth.revocation_topic,)),
            handlers=handlers,
            start=IssuerReplayWindow(jwks_source),
            listener=self,
            catalog=catalog,
            metrics=metrics,
        )

    async def run(self) -> None:
        await self.consumer.run()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _apply(self, event: Any, context: EventContext[None]) -> None:
        self._revocations.apply(revocation_of(event))
        self._revocations.prune()

    def skipped(self, record: ConsumerRecord, problem: str) -> None:
        self._skipped.inc()

    def caught_up(self) -> None:
        if not self._revocations.loaded:
            self._revocations.mark_loaded()
            logger.info("revocations loaded", extra={"revoked_tokens": len(self._revocations)})
