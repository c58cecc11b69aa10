"""The documents of the transition log, as frozen dataclasses, and their BSON shape.

A transition document:

    {_id: "<aggregate>:<version>", aggregate, version, state: {...}, cause,
     committed_at: <date, writer's clock>,
     event: {event_id, type, topic, payload: <bytes>, traceparent},
     published: false}

`published` is inserted false with the transition and set true by the relay
once the event is on the broker (a hint for its query; see `outbox`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bson.codec_options import CodecOptions
from google.protobuf.message import Message

from shopmesh_platform.docstore.ids import parse_transition_id, transition_id
from shopmesh_platform.events.envelope import TRACEPARENT, EventEnvelope, encode, envelope, header

Document = dict[str, Any]
# Dates come back timezone-aware (UTC), as they were written.
CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=True, tzinfo=dt.UTC)


def utc_now_ms() -> dt.datetime:
    """Now, truncated to BSON's millisecond precision so a written record equals the one read back."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class OutboxEvent:
    """The event a transition carries, ready to publish (payload already serialized)."""

    topic: str
    event_id: str
    event_type: str
    payload: bytes
    traceparent: str | None = None

    def to_document(self) -> Document:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "topic": self.topic,
            "payload": self.payload,
            "traceparent": self.traceparent,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> OutboxEvent:
        return cls(
            topic=document["topic"],
            event_id=document["event_id"],
            event_type=document["type"],
            payload=bytes(document["payload"]),
            traceparent=document.get("traceparent"),
        )


def outbox_event(topic: str, aggregate_id: str, event: Message) -> OutboxEvent:
    """Serialize `event` for the log, with the current trace context.

    `event_id` and `occurred_at` are filled in when the message has them and they are empty.
    """
    fields = event.DESCRIPTOR.fields_by_name
    if "event_id" in fields and not event.event_id:  # type: ignore[attr-defined]
        event.event_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    if "occurred_at" in fields and not event.HasField("occurred_at"):
        event.occurred_at.GetCurrentTime()  # type: ignore[attr-defined]
    event_id = str(getattr(event, "event_id", "") or uuid.uuid4())
    wire = envelope(topic, aggregate_id, event_id, event)
    return OutboxEvent(topic, event_id, event.DESCRIPTOR.full_name, wire.value, header(wire.headers, TRACEPARENT))


@dataclass(frozen=True)
class NextState:
    """What a decision function returns: the aggregate's new state and the event that says so."""

    state: Mapping[str, Any]
    event: OutboxEvent


@dataclass(frozen=True)
class Transition:
    """One inserted version of an aggregate."""

    aggregate: str
    version: int
    state: Mapping[str, Any]
    event: OutboxEvent
    cause: str
    committed_at: dt.datetime

    @property
    def id(self) -> str:
        return transition_id(self.aggregate, self.version)

    def to_document(self) -> Document:
        return {
            "_id": self.id,
            "aggregate": self.aggregate,
            "version": self.version,
            "state": dict(self.state),
            "event": self.event.to_document(),
            "cause": self.cause,
            "committed_at": self.committed_at,
            "published": False,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Transition:
        return cls(
            aggregate=document["aggregate"],
            version=int(document["version"]),
            state=document["state"],
            event=OutboxEvent.from_document(document["event"]),
            cause=document["cause"],
            committed_at=document["committed_at"],
        )


@dataclass(frozen=True)
class PendingEvent:
    """A committed transition's event that has no published marker yet, as the relay sees it."""

    transition_id: str
    committed_at: dt.datetime
    event: OutboxEvent

    @property
    def aggregate(self) -> str:
        return parse_transition_id(self.transition_id)[0]

    @property
    def version(self) -> int:
        return parse_transition_id(self.transition_id)[1]

    # The relay interface's field names.
    @property
    def topic(self) -> str:
        return self.event.topic

    @property
    def key(self) -> bytes:
        """Kafka key = aggregate id: one aggregate's events stay in one partition, in order."""
        return self.aggregate.encode()

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def event_type(self) -> str:
        return self.event.event_type

    @property
    def payload(self) -> bytes:
        return self.event.payload

    @property
    def traceparent(self) -> str | None:
        return self.event.traceparent

    def envelope(self) -> EventEnvelope:
        return encode(
            self.topic,
            self.aggregate,
            event_id=self.event_id,
            event_type=self.event_type,
            payload=self.payload,
            traceparent=self.traceparent,
        )

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PendingEvent:
        return cls(document["_id"], document["committed_at"], OutboxEvent.from_document(document["event"]))
