"""The transition log: every state change of an aggregate is an inserted document.

`append` inserts `<aggregate>:<version>` with version = previous + 1. The unique
`_id` is the guard: of any number of concurrent writers of version n+1 exactly
one succeeds; the others get `TransitionConflict` and either report it (gRPC
FAILED_PRECONDITION / ABORTED) or re-read and decide again (`transition`).

The unique `cause` makes the same insert an inbox: a transition caused by event
E for consumer C carries `cause = "C:E"`, so a redelivered E cannot transition
the aggregate twice (`AlreadyApplied`), and effect and inbox entry are one
insert. A request with an idempotency key can use `request:<key>` the same way.

The current state of an aggregate is its highest version (index on aggregate,
version). Nothing here is ever updated in place; the one later write to a
transition is the relay's `published` hint (see `outbox`).

FerretDB 1.24 hands a filter to PostgreSQL ("pushdown") only for equality on
top-level fields; anything else makes it read and decode the whole collection.
So every lookup here is such an equality on the first key of a declared index,
built by the `*_filter` functions below (tests explain them against FerretDB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shopmesh_platform.docstore.ids import self_cause
from shopmesh_platform.docstore.records import (
    CODEC_OPTIONS,
    Document,
    NextState,
    OutboxEvent,
    Transition,
    utc_now_ms,
)
from shopmesh_platform.events.doorbell import Doorbell

Decide = Callable[[Transition | None], NextState | None]


def aggregate_filter(aggregate: str) -> Document:
    """Every version of `aggregate` (the latest, the history)."""
    return {"aggregate": aggregate}


def version_filter(aggregate: str, version: int) -> Document:
    """One version of `aggregate`: by the indexed `aggregate`, not by `_id` (same document)."""
    return {"aggregate": aggregate, "version": version}


def cause_filter(cause: str) -> Document:
    return {"cause": cause}


class TransitionError(Exception):
    """A transition was not applied; the subclass says why."""


class TransitionConflict(TransitionError):
    """Another writer inserted this version first: re-read, or report FAILED_PRECONDITION/ABORTED."""

    def __init__(self, aggregate: str, version: int) -> None:
        super().__init__(f"version {version} of aggregate {aggregate} was written by another writer")
        self.aggregate = aggregate
        self.version = version


class TransitionRefused(TransitionError):
    """The current state does not allow the transition (FAILED_PRECONDITION)."""

    def __init__(self, aggregate: str, current: Transition | None) -> None:
        super().__init__(f"aggregate {aggregate} does not allow this transition in its current state")
        self.aggregate = aggregate
        self.current = current


class AlreadyApplied(TransitionError):
    """A transition with this cause exists: the effect already happened (ack the redelivery)."""

    def __init__(self, existing: Transition) -> None:
        super().__init__(f"cause {existing.cause} was already applied as {existing.id}")
        self.existing = existing


class TransitionLog:
    """The transitions of one aggregate type, in collection `<name>_transitions`."""

    def __init__(self, database: AsyncDatabase[Document], name: str) -> None:
        self.name = name
        self.collection = database.get_collection(f"{name}_transitions", codec_options=CODEC_OPTIONS)
        # Rung after every insert: this process's relay publishes at once instead of at its next poll.
        self.appended = Doorbell()

    def indexes(self) -> list[IndexModel]:
        return [
            # The latest version of an aggregate, and its history in order.
            IndexModel([("aggregate", ASCENDING), ("version", DESCENDING)], name="aggregate_version", unique=True),
            # One transition per cause: the inbox of the effects that are transitions.
            IndexModel([("cause", ASCENDING)], name="cause", unique=True),
            # The relay's query of unpublished transitions (`published: false`, see `outbox`).
            IndexModel([("published", ASCENDING)], name="published"),
        ]

    async def append(
        self,
        aggregate: str,
        previous_version: int,
        state: Mapping[str, Any],
        event: OutboxEvent,
        *,
        cause: str | None = None,
    ) -> Transition:
        """Insert version `previous_version + 1` (0 creates the aggregate); the insert is the guard."""
        version = previous_version + 1
        transition = Transition(
            aggregate=aggregate,
            version=version,
            state=state,
            event=event,
            cause=cause or self_cause(aggregate, version),
            committed_at=utc_now_ms(),
        )
        try:
            await self.collection.insert_one(transition.to_document())
        except DuplicateKeyError:
            # FerretDB does not say which index refused: look the cause up.
            existing = await self.by_cause(transition.cause) if cause is not None else None
            if existing is not None:
                raise AlreadyApplied(existing) from None
            raise TransitionConflict(aggregate, version) from None
        self.appended.ring()
        return transition

    async def latest(self, aggregate: str) -> Transition | None:
        """The current state: the highest version, or None for an unknown aggregate."""
        document = await self.collection.find_one(aggregate_filter(aggregate), sort=[("version", DESCENDING)])
        return None if document is None else Transition.from_document(document)

    async def get(self, aggregate: str, version: int) -> Transition | None:
        document = await self.collection.find_one(version_filter(aggregate, version))
        return None if document is None else Transition.from_document(document)

    async def by_cause(self, cause: str) -> Transition | None:
        document = await self.collection.find_one(cause_filter(cause))
        return None if document is None else Transition.from_document(document)

    async def history(self, aggregate: str) -> AsyncIterator[Transition]:
        """Every version of `aggregate`, oldest first."""
        async for document in self.collection.find(aggregate_filter(aggregate)).sort("version", ASCENDING):
            yield Transition.from_document(document)

    async def transition(
        self, aggregate: str, decide: Decide, *, cause: str | None = None, attempts: int = 5
    ) -> Transition:
        """Apply a transition if the current state allows it: read latest, decide, insert next.

        `decide(current)` returns the next state and its event, or None when the
        current state (None: no such aggregate) does not allow the transition
        (`TransitionRefused`). Losing the insert race re-reads and decides again,
        up to `attempts` times (then `TransitionConflict`). With a `cause`, an
        existing transition of that cause raises `AlreadyApplied` before deciding,
        since a redelivered event usually finds a state that no longer allows it.
        """
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        previous = 0
        for _ in range(attempts):
            if cause is not None and (existing := await self.by_cause(cause)) is not None:
                raise AlreadyApplied(existing)
            current = await self.latest(aggregate)
            decision = decide(current)
            if decision is None:
                # The state may have moved on because this very cause was applied since the check above.
                if cause is not None and (existing := await self.by_cause(cause)) is not None:
                    raise AlreadyApplied(existing)
                raise TransitionRefused(aggregate, current)
            previous = 0 if current is None else current.version
            try:
                return await self.append(aggregate, previous, decision.state, decision.event, cause=cause)
            except TransitionConflict:
                continue
        raise TransitionConflict(aggregate, previous + 1)
