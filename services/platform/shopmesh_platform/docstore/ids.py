"""The `_id` formats every insert-only guarantee rests on, and time-slot arithmetic.

Pure functions, no I/O: `<aggregate>:<version>` for a transition (and its
published marker), `<consumer>:<event id>` for an inbox entry, `<service>:<slot>`
for a lease slot, where slot = floor(unix time / lease seconds).
"""

from __future__ import annotations

import math

SEPARATOR = ":"


def _require_name(kind: str, value: str) -> None:
    # The part before the last separator must not be ambiguous: an empty name would collide across kinds.
    if not value:
        raise ValueError(f"{kind} must not be empty")


def transition_id(aggregate: str, version: int) -> str:
    """`<aggregate>:<version>`; versions start at 1."""
    _require_name("aggregate", aggregate)
    if version < 1:
        raise ValueError("version must be >= 1")
    return f"{aggregate}{SEPARATOR}{version}"


def parse_transition_id(value: str) -> tuple[str, int]:
    """The inverse of `transition_id` (the aggregate id may itself contain ':')."""
    aggregate, separator, version = value.rpartition(SEPARATOR)
    if not separator or not aggregate or not version.isdigit() or int(version) < 1:
        raise ValueError(f"not a transition id: {value!r}")
    return aggregate, int(version)


def inbox_id(consumer: str, event_id: str) -> str:
    """`<consumer>:<event id>`: one entry per consumer and event."""
    _require_name("consumer", consumer)
    _require_name("event id", event_id)
    return f"{consumer}{SEPARATOR}{event_id}"


def self_cause(aggregate: str, version: int) -> str:
    """The `cause` of a transition no event or request caused: unique because its id is.

    MongoDB indexes a missing field as null (one document only) while FerretDB
    ignores it, so the unique `cause` index gets a value on every document.
    """
    return f"self{SEPARATOR}{transition_id(aggregate, version)}"


def slot_of(now: float, lease_seconds: float) -> int:
    """The slot that unix time `now` falls in."""
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be > 0")
    return math.floor(now / lease_seconds)


def slot_start(slot: int, lease_seconds: float) -> float:
    return slot * lease_seconds


def slot_end(slot: int, lease_seconds: float) -> float:
    """When `slot` ends and `slot + 1` begins."""
    return (slot + 1) * lease_seconds


def lease_id(service: str, slot: int) -> str:
    """`<service>:<slot>`: at most one holder per service and slot."""
    _require_name("service", service)
    return f"{service}{SEPARATOR}{slot}"
