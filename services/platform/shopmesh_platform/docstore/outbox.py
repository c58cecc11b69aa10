"""The relay's view of a transition log: pending events, published markers, and the `published` flag.

The transitions are the outbox. Every transition is inserted with `published:
false` (the same insert as the transition, so none can be missed). Publishing is
recorded by inserting a marker `_id = <transition id>` into `<log>_published`
(insert-only: the record of publishing; a second marker of the same transition
is a harmless duplicate), then setting the transition's flag to true with an
unconditional `$set`. The flag is a derived hint for the query, never a guard:
FerretDB 1.24 rewrites a document whole on update, which is safe here because
nothing else writes a transition after its insert, and no "only one wins"
rests on it (two relays during a lease handover both set it true).

Finding what is pending is one query, `{published: false}`: a top-level
equality on the first key of the log's `published` index, which FerretDB hands
to PostgreSQL, so it decodes only the pending transitions (FerretDB 1.24 has no
`$lookup` or change streams, and does not push ranges or `$in` down; see
`transitions`). Order: per aggregate, versions ascending (Kafka key =
aggregate id); across aggregates, by commit time (`publish_order`). An earlier
unpublished version of an aggregate is always in the same result set, since
its flag is still false.

A crash between the marker insert and the flag set leaves the flag false: the
event is published again at the next poll. That is the relay's documented
at-least-once delivery; consumers deduplicate by event id.

Transitions a previous version inserted carry no flag: `backfill` (run by the
relay each time it takes the lease) finds them with a full scan and sets each
flag from its marker, so unpublished ones are published, in order. A previous
version's replica still writing during a rolling deploy, after the new relay's
backfill, is caught by the next backfill (any restart or lease handover).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shopmesh_platform.docstore.records import CODEC_OPTIONS, Document, PendingEvent, utc_now_ms
from shopmesh_platform.docstore.transitions import TransitionLog, version_filter

# The relay's query of pending transitions.
PENDING_FILTER: Document = {"published": False}
# Transitions a previous version inserted (not pushed down: only `backfill` uses it, once per lease).
UNFLAGGED_FILTER: Document = {"published": {"$exists": False}}


def publish_order(candidates: list[Document]) -> list[Document]:
    """Order by commit time, but within one aggregate always by version.

    Each aggregate keeps the positions its transitions take in commit-time
    order, filled with its transitions in version order (writer clocks may
    disagree, versions never do).
    """
    by_time = sorted(candidates, key=lambda d: (d["committed_at"], d["_id"]))
    by_aggregate: dict[str, list[Document]] = {}
    for document in by_time:
        by_aggregate.setdefault(document["aggregate"], []).append(document)
    for documents in by_aggregate.values():
        documents.sort(key=lambda d: d["version"], reverse=True)
    return [by_aggregate[document["aggregate"]].pop() for document in by_time]


class MongoOutboxStore:
    """Pending events of one `TransitionLog`, their published markers and flags."""

    def __init__(self, database: AsyncDatabase[Document], log: TransitionLog, *, publisher: str) -> None:
        self._log = log
        self._publisher = publisher
        self.markers = database.get_collection(f"{log.name}_published", codec_options=CODEC_OPTIONS)
        self.last_backlog = 0

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self.markers

    async def wait_for_events(self, timeout: float) -> None:
        """Until this process appends a transition, or `timeout` seconds (another replica's writes)."""
        await self._log.appended.wait(timeout)

    def indexes(self) -> list[IndexModel]:
        # The log's own `published` index is declared by the log (`TransitionLog.indexes`).
        return [IndexModel([("published_at", ASCENDING)], name="published_at")]

    async def pending(self, limit: int = 100) -> AsyncIterator[PendingEvent]:
        """Up to `limit` unpublished events, in publish order (see `publish_order`)."""
        documents = await self._log.collection.find(PENDING_FILTER).to_list()
        self.last_backlog = len(documents)
        for document in publish_order(documents)[:limit]:
            yield PendingEvent.from_document(document)

    async def mark_published(self, event: PendingEvent) -> None:
        """Record that `event` reached the broker: insert its marker (idempotent), then set its flag."""
        # A duplicate: another relay (during a lease handover) marked it first, or a re-publish after a crash.
        with contextlib.suppress(DuplicateKeyError):
            await self.markers.insert_one(
                {
                    "_id": event.transition_id,
                    "event_id": event.event_id,
                    "publisher": self._publisher,
                    "published_at": utc_now_ms(),
                }
            )
        await self._log.collection.update_one(
            version_filter(event.aggregate, event.version), {"$set": {"published": True}}
        )

    async def is_published(self, transition: str) -> bool:
        return await self.markers.find_one({"_id": transition}, {"_id": 1}) is not None

    async def backfill(self) -> int:
        """Flag the transitions a previous version inserted without `published`; returns how many.

        A full scan of the log (FerretDB cannot hand "field missing" to
        PostgreSQL), so the relay runs it once each time it takes the lease.
        Each flag is set from the transition's marker: true if it was
        published, false (pending) if not.
        """
        unflagged = await self._log.collection.find(UNFLAGGED_FILTER, {"aggregate": 1, "version": 1}).to_list()
        if not unflagged:
            return 0
        marked = {document["_id"] async for document in self.markers.find({}, {"_id": 1})}
        for document in unflagged:
            await self._log.collection.update_one(
                version_filter(document["aggregate"], document["version"]),
                {"$set": {"published": document["_id"] in marked}},
            )
        return len(unflagged)
