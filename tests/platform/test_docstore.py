"""The docstore's pure parts: id formats, slot arithmetic, lease timing, publish order, events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.docstore import AlreadyApplied, CauseInbox, LeaseTiming, PendingEvent, Transition, outbox_event
from shopmesh_platform.docstore.ids import (
    inbox_id,
    lease_id,
    parse_transition_id,
    self_cause,
    slot_end,
    slot_of,
    slot_start,
    transition_id,
)
from shopmesh_platform.docstore.outbox import publish_order


def test_transition_ids_round_trip_even_when_the_aggregate_contains_the_separator() -> None:
    assert transition_id("order-1", 7) == "order-1:7"
    assert parse_transition_id(transition_id("user:42:cart", 3)) == ("user:42:cart", 3)


@pytest.mark.parametrize("bad", ["", "order", "order:", ":3", "order:0", "order:-1", "order:x"])
def test_malformed_transition_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_transition_id(bad)


def test_versions_start_at_one_and_names_are_never_empty() -> None:
    with pytest.raises(ValueError):
        transition_id("order", 0)
    with pytest.raises(ValueError):
        transition_id("", 1)
    with pytest.raises(ValueError):
        inbox_id("orders", "")
    with pytest.raises(ValueError):
        lease_id("", 5)


def test_inbox_lease_and_self_cause_formats() -> None:
    assert inbox_id("orders-payments", "e1") == "orders-payments:e1"
    assert lease_id("orders", 172_800_000) == "orders:172800000"
    # Distinct from any inbox entry of a consumer, and unique per transition.
    assert self_cause("order-1", 2) == "self:order-1:2"


@pytest.mark.parametrize(
    ("now", "lease", "slot"),
    [(0.0, 10.0, 0), (9.999, 10.0, 0), (10.0, 10.0, 1), (1_700_000_005.5, 10.0, 170_000_000), (3.0, 1.5, 2)],
)
def test_slot_of_is_the_floor_of_time_over_lease(now: float, lease: float, slot: int) -> None:
    assert slot_of(now, lease) == slot
    assert slot_start(slot, lease) <= now < slot_end(slot, lease)


def test_slots_tile_time_without_gaps() -> None:
    for slot in range(5):
        assert slot_end(slot, 2.5) == slot_start(slot + 1, 2.5)
    with pytest.raises(ValueError):
        slot_of(1.0, 0)


@pytest.mark.parametrize(
    "timing",
    [
        {"lease_seconds": 10, "renew_before_end": 3, "clock_margin": 0},
        {"lease_seconds": 10, "renew_before_end": 1, "clock_margin": 2},
        {"lease_seconds": 3, "renew_before_end": 3, "clock_margin": 1},
        {"lease_seconds": 10, "renew_before_end": 3, "clock_margin": 1, "retry_interval": 0},
    ],
)
def test_lease_timing_must_leave_room_to_renew_and_for_clock_skew(timing: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LeaseTiming(**timing)


def _candidate(aggregate: str, version: int, second: int) -> dict[str, Any]:
    committed_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=second)
    identity = {"_id": transition_id(aggregate, version), "aggregate": aggregate, "version": version}
    return {**identity, "committed_at": committed_at}


def test_publish_order_keeps_versions_in_order_when_writer_clocks_disagree() -> None:
    # b:2 was stamped by a writer whose clock ran behind the one that wrote b:1.
    candidates = [_candidate("a", 1, 1), _candidate("b", 2, 2), _candidate("b", 1, 3), _candidate("a", 2, 4)]
    ordered = [d["_id"] for d in publish_order(candidates)]
    assert ordered == ["a:1", "b:1", "b:2", "a:2"]


def test_an_outbox_event_carries_what_the_relay_publishes() -> None:
    message = user_events.UserRegistered(user_id="u1", email="ada@example.com")
    event = outbox_event("user-events", "u1", message)
    assert uuid.UUID(event.event_id) and message.event_id == event.event_id
    assert event.event_type == "shopmesh.user.v1.UserRegistered"
    assert user_events.UserRegistered.FromString(event.payload).email == "ada@example.com"
    pending = PendingEvent("u1:3", dt.datetime.now(dt.UTC), event)
    envelope = pending.envelope()
    assert (pending.aggregate, pending.version, envelope.key, envelope.topic) == ("u1", 3, b"u1", "user-events")
    headers = dict(envelope.headers)
    assert headers["event-id"] == event.event_id.encode()
    assert headers["event-type"] == b"shopmesh.user.v1.UserRegistered"
    assert headers["content-type"] == b"application/x-protobuf"


async def test_the_cause_inbox_hands_the_cause_to_the_effect_and_reads_already_applied_as_a_duplicate() -> None:
    seen: list[str] = []
    event_id = str(uuid.uuid4())

    async def first(cause: str) -> None:
        seen.append(cause)

    async def redelivered(cause: str) -> None:
        seen.append(cause)
        event = outbox_event("user-events", "u1", user_events.UserRegistered(user_id="u1"))
        raise AlreadyApplied(Transition("u1", 2, {}, event, cause, dt.datetime.now(dt.UTC)))

    inbox = CauseInbox()
    assert await inbox.apply("orders.payment-events", event_id, first) is True
    assert await inbox.apply("orders.payment-events", event_id, redelivered) is False
    assert seen == [inbox_id("orders.payment-events", event_id)] * 2


async def test_the_cause_inbox_lets_other_failures_through_for_a_retry() -> None:
    async def failing(cause: str) -> None:
        raise RuntimeError("store unreachable")

    with pytest.raises(RuntimeError):
        await CauseInbox().apply("orders.payment-events", str(uuid.uuid4()), failing)
