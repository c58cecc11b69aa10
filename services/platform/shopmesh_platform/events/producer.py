"""The idempotent, acks=all Kafka producer of EventEnvelopes.

`send` returns once the broker acknowledged the record; `enqueue` hands the
record to the producer and returns the future of its acknowledgement, so a
relay can pipeline a batch (aiokafka keeps one request in flight per
partition, so records of one key keep their order even when retried).

A record is sent with the trace context of its `traceparent` header current
(the call that wrote the event, often long before a relay sends it), so a send
span (aiokafka's instrumentation, when tracing exports) joins that call's trace.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from opentelemetry import context

from shopmesh_platform.events.envelope import TRACEPARENT, EventEnvelope, header
from shopmesh_platform.events.tracing import producer_context
from shopmesh_platform.kafka import KafkaConfig


class BrokerUnreachable(ConnectionError):
    """The cluster did not answer a metadata request."""


class EventProducer:
    """An idempotent, acks=all producer of EventEnvelopes."""

    def __init__(self, config: KafkaConfig, client_id: str, *, max_request_size: int = 1_048_576) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=config.request_timeout_ms,
            max_request_size=max_request_size,
            **config.client_options(),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def enqueue(self, event: EventEnvelope) -> asyncio.Future[object]:
        """Queue the record; the returned future resolves when the broker acknowledged it."""
        traceparent = header(event.headers, TRACEPARENT)
        token = context.attach(producer_context(traceparent)) if traceparent else None
        try:
            future: asyncio.Future[object] = await self._producer.send(
                event.topic, value=event.value, key=event.key, headers=list(event.headers)
            )
        finally:
            if token is not None:
                context.detach(token)
        return future

    async def send(self, event: EventEnvelope) -> None:
        """Return once the broker has acknowledged the record."""
        await (await self.enqueue(event))

    async def topic_exists(self, topic: str) -> bool:
        """Ask the cluster now; BrokerUnreachable when it does not answer."""
        client = self._producer.client
        if not await client.force_metadata_update():
            raise BrokerUnreachable("kafka did not answer a metadata request")
        return client.cluster.partitions_for_topic(topic) is not None
