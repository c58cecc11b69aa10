"""The relay's view of a transition log: pending events, and inserted `published` markers.

The transitions are the outbox. Publishing is recorded by inserting a marker
`_id = <transition id>` into `<log>_published` (an insert, never a write to the
aggregate); a second marker of the same transition is a harmless duplicate.

Finding what is pending, without `$lookup` (FerretDB 1.24 has none) or change
streams: scan the transitions committed since a watermark W, anti-join their ids
with the markers (`$in`), and hand out the unmarked ones. Then W moves to
min(scan start - grace, oldest unmarked). Invariant: every transition committed
before W has a marker, so nothing behind W needs a look.

Clocks: `committed_at` is the writer's clock, taken just before the insert, so a
transition can become visible after one with a later timestamp. `grace` must
exceed the longest insert (the client's socket timeout) plus the clock skew
between writers and relay; then nothing lands behind the watermark. Two nets for
a writer that stalls longer than that: a transition whose predecessor version is
still unmarked pulls that predecessor in (so per-aggregate order holds and the
straggler is published before its successor), and every `deep_scan_every` scans
the window reaches back `deep_scan_lookback` further.

Order: per aggregate, versions ascending (Kafka key = aggregate id); across
aggregates, by commit time. The watermark is kept in `relay_cursors` (updated in
place: a derived value, lost or stale it only means a longer scan).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shopmesh_platform.docstore.ids import transition_id
from shopmesh_platform.docstore.records import CODEC_OPTIONS, Document, PendingEvent, utc_now_ms
from shopmesh_platform.docstore.transitions import TransitionLog

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Keeps each `$in` query a reasonable size.
ID_CHUNK = 500


def _chunks(values: list[str], size: int = ID_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


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
    """Pending events of one `TransitionLog` and their published markers."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        log: TransitionLog,
        *,
        publisher: str,
        grace: dt.timedelta = dt.timedelta(seconds=30),
        deep_scan_every: int = 1000,
        deep_scan_lookback: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        self._log = log
        self._publisher = publisher
        self._grace = grace
        self._deep_scan_every = deep_scan_every
        self._deep_scan_lookback = deep_scan_lookback
        self._scans = 0
        self.markers = database.get_collection(f"{log.name}_published", codec_options=CODEC_OPTIONS)
        self.cursors = database.get_collection("relay_cursors", codec_options=CODEC_OPTIONS)
        self.last_backlog = 0

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self.markers

    def indexes(self) -> list[IndexModel]:
        return [IndexModel([("published_at", ASCENDING)], name="published_at")]

    async def pending(self, limit: int = 100) -> AsyncIterator[PendingEvent]:
        """Up to `limit` unpublished events, in publish order (see `publish_order`)."""
        scan_started = utc_now_ms()
        watermark = await self._watermark()
        self._scans += 1
        if self._scans % self._deep_scan_every == 0:
            watermark = max(EPOCH, watermark - self._deep_scan_lookback)
        window = await self._log.collection.find(
            {"committed_at": {"$gte": watermark}}, {"_id": 1, "aggregate": 1, "version": 1, "committed_at": 1}
        ).to_list()
        unmarked = await self._without_markers(window)
        unmarked += await self._unmarked_predecessors(unmarked)
        self.last_backlog = len(unmarked)
        oldest = min((d["committed_at"] for d in unmarked), default=None)
        settled = scan_started - self._grace
        await self._save_watermark(settled if oldest is None else min(settled, oldest))
        chosen = publish_order(unmarked)[:limit]
        full = await self._documents([d["_id"] for d in chosen])
        for document in chosen:
            yield PendingEvent.from_document(full[document["_id"]])

    async def mark_published(self, event: PendingEvent) -> None:
        """Record that `event` reached the broker: insert its marker (idempotent)."""
        # A duplicate: another relay (during a lease handover) marked it first.
        with contextlib.suppress(DuplicateKeyError):
            await self.markers.insert_one(
                {
                    "_id": event.transition_id,
                    "event_id": event.event_id,
                    "publisher": self._publisher,
                    "published_at": utc_now_ms(),
                }
            )

    async def is_published(self, transition: str) -> bool:
        return await self.markers.find_one({"_id": transition}, {"_id": 1}) is not None

    async def _without_markers(self, documents: list[Document]) -> list[Document]:
        marked = await self._marked([d["_id"] for d in documents])
        return [d for d in documents if d["_id"] not in marked]

    async def _marked(self, ids: list[str]) -> set[str]:
        marked: set[str] = set()
        for chunk in _chunks(ids):
            marked.update([d["_id"] async for d in self.markers.find({"_id": {"$in": chunk}}, {"_id": 1})])
        return marked

    async def _unmarked_predecessors(self, unmarked: list[Document]) -> list[Document]:
        """Earlier unmarked versions of the aggregates in `unmarked` that the window missed."""
        lowest: dict[str, int] = {}
        for document in unmarked:
            aggregate, version = document["aggregate"], document["version"]
            lowest[aggregate] = min(version, lowest.get(aggregate, version))
        predecessors = {transition_id(a, v - 1): (a, v) for a, v in lowest.items() if v > 1}
        missing = set(predecessors) - await self._marked(list(predecessors))
        found: list[Document] = []
        for predecessor in missing:
            aggregate, version = predecessors[predecessor]
            earlier = await self._log.collection.find(
                {"aggregate": aggregate, "version": {"$lt": version}},
                {"_id": 1, "aggregate": 1, "version": 1, "committed_at": 1},
            ).to_list()
            found += await self._without_markers(earlier)
        return found

    async def _documents(self, ids: list[str]) -> dict[str, Document]:
        documents: dict[str, Document] = {}
        for chunk in _chunks(ids):
            async for document in self._log.collection.find({"_id": {"$in": chunk}}):
                documents[document["_id"]] = document
        return documents

    async def _watermark(self) -> dt.datetime:
        document: dict[str, Any] | None = await self.cursors.find_one({"_id": self._log.name})
        return EPOCH if document is None else document["watermark"]

    async def _save_watermark(self, watermark: dt.datetime) -> None:
        # A duplicate: a concurrent first save (two relays at a handover); either value is a valid lower bound.
        with contextlib.suppress(DuplicateKeyError):
            await self.cursors.replace_one(
                {"_id": self._log.name},
                {"watermark": watermark, "publisher": self._publisher, "saved_at": utc_now_ms()},
                upsert=True,
            )
