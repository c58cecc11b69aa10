"""The event envelope: how one domain event travels on Kafka, written once.

Value: the serialized protobuf message. Key: the aggregate id, so one
aggregate's events share a partition and keep their order. Headers:
`event-id` (a UUID, the consumers' deduplication key), `event-type` (the
protobuf full name, which selects the decoder), `content-type`
(application/x-protobuf) and, when a trace is active, W3C `traceparent`.
Producers, the outbox relay and the consumers all go through this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry import propagate

CONTENT_TYPE = "application/x-protobuf"
EVENT_ID = "event-id"
EVENT_TYPE = "event-type"
CONTENT_TYPE_HEADER = "content-type"
TRACEPARENT = "traceparent"

KafkaHeaders = Sequence[tuple[str, bytes]]


class MalformedEnvelope(ValueError):
    """A consumed record lacks a required header or carries an invalid one."""


@dataclass(frozen=True)
class EventHeaders:
    """The standard headers of one event."""

    event_id: str
    event_type: str
    content_type: str = CONTENT_TYPE
    traceparent: str | None = None

    def encode(self) -> list[tuple[str, bytes]]:
        headers = [
            (EVENT_ID, self.event_id.encode()),
            (EVENT_TYPE, self.event_type.encode()),
            (CONTENT_TYPE_HEADER, self.content_type.encode()),
        ]
        if self.traceparent:
            headers.append((TRACEPARENT, self.traceparent.encode()))
        return headers

    @classmethod
    def decode(cls, headers: KafkaHeaders | None) -> EventHeaders:
        """Parse a consumed record's headers; MalformedEnvelope when one is missing or invalid."""
        event_id = header(headers, EVENT_ID)
        event_type = header(headers, EVENT_TYPE)
        if not event_id or not event_type:
            raise MalformedEnvelope(f"missing {EVENT_ID!r} or {EVENT_TYPE!r} header")
        try:
            event_id = str(uuid.UUID(event_id))
        except ValueError:
            raise MalformedEnvelope(f"{EVENT_ID!r} is not a UUID") from None
        content_type = header(headers, CONTENT_TYPE_HEADER) or CONTENT_TYPE
        if content_type != CONTENT_TYPE:
            raise MalformedEnvelope(f"unsupported content type {content_type!r}")
        return cls(event_id, event_type, content_type, header(headers, TRACEPARENT))


@dataclass(frozen=True)
class EventEnvelope:
    """What goes on the wire for one event."""

    topic: str
    key: bytes
    value: bytes
    headers: KafkaHeaders


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, if any."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def new_event_id() -> str:
    return str(uuid.uuid4())


def encode(
    topic: str, aggregate_id: str, *, event_id: str, event_type: str, payload: bytes, traceparent: str | None
) -> EventEnvelope:
    """An envelope from already serialized parts (what the outbox stores)."""
    headers = EventHeaders(event_id, event_type, CONTENT_TYPE, traceparent)
    return EventEnvelope(topic, aggregate_id.encode(), payload, headers.encode())


def envelope(topic: str, aggregate_id: str, event_id: str, event: Message) -> EventEnvelope:
    """Serialize `event` with the standard headers (and the current trace context)."""
    return encode(
        topic,
        aggregate_id,
        event_id=event_id,
        event_type=event.DESCRIPTOR.full_name,
        payload=event.SerializeToString(),
        traceparent=current_traceparent(),
    )


def header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    """The value of header `name` in a consumed record, decoded (the first one wins)."""
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace")
    return None
