"""The pure pieces of shopmesh_platform.events: the envelope codec, header
parsing, the topic catalog, dead-letter headers and attempt accounting."""

from __future__ import annotations

import uuid

import pytest

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events import topics
from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.dlq import DLQ_ATTEMPTS, DLQ_GROUP, dead_letter, parse_dead_letter, redrive_envelope
from shopmesh_platform.events.envelope import EventHeaders, MalformedEnvelope, envelope, header
from shopmesh_platform.events.outbox import OutboxEvent, lease_lock_key
from shopmesh_platform.events.topics import TopicCatalog, UndeclaredTopic


def test_envelope_carries_key_payload_and_standard_headers() -> None:
    event_id = str(uuid.uuid4())
    event = user_events.UserRegistered(event_id=event_id, user_id="u-1", email="a@example.com")
    wire = envelope("user-events", "u-1", event_id, event)
    assert (wire.topic, wire.key) == ("user-events", b"u-1")
    assert user_events.UserRegistered.FromString(wire.value) == event
    decoded = EventHeaders.decode(wire.headers)
    assert decoded == EventHeaders(event_id, "shopmesh.user.v1.UserRegistered", "application/x-protobuf", None)


def test_headers_round_trip_with_traceparent() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    original = EventHeaders(str(uuid.uuid4()), "shopmesh.user.v1.SessionRevoked", traceparent=traceparent)
    assert EventHeaders.decode(original.encode()) == original
    assert header(original.encode(), "traceparent") == traceparent


def test_outbox_row_and_direct_envelope_encode_identically() -> None:
    event_id = str(uuid.uuid4())
    event = user_events.UserSuspended(event_id=event_id, user_id="u-2", reason="fraud")
    row = OutboxEvent(1, event_id, "user-events", "u-2", event.DESCRIPTOR.full_name, event.SerializeToString(), None, 0)
    assert row.envelope() == envelope("user-events", "u-2", event_id, event)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("event-type", b"shopmesh.user.v1.UserRegistered")],
        [("event-id", b"not-a-uuid"), ("event-type", b"x.Y")],
        [("event-id", str(uuid.uuid4()).encode()), ("event-type", b"x.Y"), ("content-type", b"application/json")],
    ],
)
def test_malformed_headers_are_refused(headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(MalformedEnvelope):
        EventHeaders.decode(headers)


def test_retry_policy_backs_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=4, initial_delay=0.1, max_delay=0.5)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert [policy.exhausted(n) for n in (1, 3, 4, 5)] == [False, False, True, True]


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_delay"):
        RetryPolicy(initial_delay=2.0, max_delay=1.0)


def test_catalog_knows_declared_topics_and_their_dlq_twins() -> None:
    catalog = TopicCatalog.load()
    for name in (topics.USER_EVENTS, topics.ORDER_EVENTS, topics.PAYMENT_EVENTS, topics.INVENTORY_EVENTS):
        assert catalog.require(name) == name
        assert catalog.is_declared(f"{name}.dlq")
    assert topics.NOTIFICATION_EVENTS in catalog.topics
    assert not catalog.is_declared("no-such-topic")
    with pytest.raises(UndeclaredTopic):
        catalog.require("no-such-topic")


def test_dead_letter_names_the_failure_and_redrives_to_the_original() -> None:
    original_headers = EventHeaders(str(uuid.uuid4()), "shopmesh.user.v1.UserRegistered").encode()
    record = dead_letter(
        topic="user-events",
        partition=2,
        offset=41,
        key=b"u-3",
        value=b"\x01\x02",
        headers=original_headers,
        error=ValueError("boom"),
        group="notifications.welcome",
        attempts=3,
    )
    assert record.topic == "user-events.dlq"
    assert header(record.headers, DLQ_GROUP) == "notifications.welcome"
    assert header(record.headers, DLQ_ATTEMPTS) == "3"
    letter = parse_dead_letter(
        record.topic, partition=2, offset=7, key=record.key, value=record.value, headers=record.headers
    )
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == ("user-events", 2, 41)
    assert (letter.error, letter.error_type, letter.attempts) == ("boom", "ValueError", 3)
    assert letter.event_type == "shopmesh.user.v1.UserRegistered"
    again = redrive_envelope(letter)
    assert (again.topic, again.key, again.value, list(again.headers)) == (
        "user-events",
        b"u-3",
        b"\x01\x02",
        original_headers,
    )


def test_lease_keys_are_per_service_and_fit_an_int4() -> None:
    keys = {lease_lock_key(service) for service in ("users", "payments", "inventory", "notifications")}
    assert len(keys) == 4
    assert all(-(2**31) <= key < 2**31 for key in keys)
