"""The current-state cache: the one document per aggregate that is updated in place.

Collection `<log>_current`, `_id = <aggregate>`, holding the latest version's
state for listing queries (e.g. a user's orders, newest first). The fields those
queries filter on are lifted from the state to top-level fields (`lift`):
FerretDB 1.24 hands only equality on top-level fields to PostgreSQL and decodes
the whole collection for a dotted path like `state.user_id`. Each entry records
the `shape` (version of `lift`) it was written with; `rebuild_all` rewrites
every entry, and `reshape` rewrites the entries of an older shape (e.g. written
by a previous version's replica during a rolling deploy) without a full decode.

The cache is derived, never the source of truth: FerretDB rewrites a document
whole on update, so two racing refreshes can leave an older version in place,
and a crash between the transition insert and the refresh leaves it behind.
Hence:

- `get` of one aggregate reads the log (`TransitionLog.latest`), never the cache;
- lists read the cache and may be briefly stale; each entry carries its
  `version`, so a caller can confirm an entry against the log;
- `rebuild` / `rebuild_all` rewrite the cache from the log (at start, after a
  crash, or on a schedule), and a refresh never lowers a version it can see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shopmesh_platform.docstore.records import CODEC_OPTIONS, Document, Transition, utc_now_ms
from shopmesh_platform.docstore.transitions import TransitionLog

# The top-level fields of an entry, derived from the state, that listing queries filter on.
Lift = Callable[[Mapping[str, Any]], Mapping[str, Any]]
ENTRY_FIELDS = frozenset({"_id", "aggregate", "version", "state", "committed_at", "refreshed_at", "shape"})


def lift_nothing(state: Mapping[str, Any]) -> Mapping[str, Any]:
    return {}


def cache_document(transition: Transition, lift: Lift = lift_nothing, shape: int = 1) -> Document:
    lifted = dict(lift(transition.state))
    if clash := ENTRY_FIELDS & lifted.keys():
        raise ValueError(f"lifted fields collide with the entry's own: {sorted(clash)}")
    return {
        "_id": transition.aggregate,
        # `_id` again, indexed: FerretDB's `_id` equality (`_jsonb->'_id' @> ...`) cannot use its `_id` index.
        "aggregate": transition.aggregate,
        "version": transition.version,
        "state": dict(transition.state),
        "committed_at": transition.committed_at,
        "refreshed_at": utc_now_ms(),
        "shape": shape,
        **lifted,
    }


def entry_filter(aggregate: str) -> Document:
    """The entry of `aggregate`, by the indexed `aggregate`."""
    return {"aggregate": aggregate}


def older_entry_filter(aggregate: str, version: int) -> Document:
    """The entry of `aggregate` if it shows a version before `version` (the indexed `aggregate` selects it)."""
    return {"aggregate": aggregate, "version": {"$lt": version}}


def other_shape_filter(shape: int) -> Document:
    """Entries not written with `shape` (`$ne` on a top-level int is pushed down too)."""
    return {"shape": {"$ne": shape}}


class CurrentStateCache:
    """Latest state per aggregate of one `TransitionLog`, for queries the log cannot answer cheaply."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        log: TransitionLog,
        listing_indexes: Sequence[IndexModel] = (),
        *,
        lift: Lift = lift_nothing,
        shape: int = 1,
    ) -> None:
        """`lift(state)` gives the top-level fields the listings query; bump `shape` whenever `lift` changes."""
        self._log = log
        self._listing_indexes = list(listing_indexes)
        self._lift = lift
        self._shape = shape
        self.collection = database.get_collection(f"{log.name}_current", codec_options=CODEC_OPTIONS)

    def indexes(self) -> list[IndexModel]:
        return [IndexModel([("aggregate", ASCENDING)], name="aggregate"), *self._listing_indexes]

    async def refresh(self, transition: Transition) -> None:
        """Show `transition` unless the cache already shows this version or a later one.

        An entry of an older shape without `aggregate` is left for `reshape` (the filter misses it).
        """
        # When the entry is as new or newer the filter misses and the upsert's insert collides: nothing to do.
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.replace_one(
                older_entry_filter(transition.aggregate, transition.version),
                self._document(transition),
                upsert=True,
            )

    async def rebuild(self, aggregate: str) -> None:
        """Make the entry of `aggregate` what the log says (unconditionally: the log wins)."""
        latest = await self._log.latest(aggregate)
        if latest is None:
            await self.collection.delete_one({"_id": aggregate})
        else:
            await self._write(self._document(latest))

    def _document(self, transition: Transition) -> Document:
        return cache_document(transition, self._lift, self._shape)

    async def _write(self, entry: Document) -> None:
        """Replace (or insert) the entry of `entry["_id"]` unconditionally."""
        try:
            await self.collection.replace_one(entry_filter(entry["_id"]), entry, upsert=True)
        except DuplicateKeyError:
            # An entry of an older shape has no `aggregate` to find it by: replace it by `_id`.
            await self.collection.replace_one({"_id": entry["_id"]}, entry, upsert=True)

    async def reshape(self) -> int:
        """Rebuild the entries written with an older shape (or none); returns how many.

        An entry of a newer shape (a newer version's replica, mid-deploy) is left to that version.
        """
        others = self.collection.find(other_shape_filter(self._shape), {"_id": 1, "shape": 1})
        older = [document["_id"] async for document in others if document.get("shape", 0) < self._shape]
        for aggregate in older:
            await self.rebuild(aggregate)
        return len(older)

    async def rebuild_all(self) -> int:
        """Make every entry what the log says and drop entries of unknown aggregates; returns the entry count.

        One pass over the log in (aggregate, version desc) order: the first
        document of each aggregate is its latest (FerretDB 1.24 has no `$group`
        `$max`/`$first`). Only entries that differ are written: an entry that
        shows the latest version in the current shape already holds that
        version's state (a version's state never changes), and rewriting every
        entry made a restart with thousands of orders take half a minute.
        """
        # Read before the log: an entry a live refresh adds meanwhile is not taken for an orphan.
        shown = {
            document["_id"]: (document.get("aggregate"), document.get("version"), document.get("shape"))
            async for document in self.collection.find({}, {"aggregate": 1, "version": 1, "shape": 1})
        }
        seen: set[str] = set()
        cursor = self._log.collection.find({}).sort([("aggregate", 1), ("version", DESCENDING)])
        async for document in cursor:
            aggregate = document["aggregate"]
            if aggregate in seen:
                continue
            seen.add(aggregate)
            transition = Transition.from_document(document)
            if shown.get(aggregate) != (aggregate, transition.version, self._shape):
                await self._write(self._document(transition))
        orphans = [aggregate for aggregate in shown if aggregate not in seen]
        if orphans:
            await self.collection.delete_many({"_id": {"$in": orphans}})
        return len(seen)

    async def find(self, query: dict[str, Any], sort: list[tuple[str, int]], limit: int) -> list[Document]:
        """A listing query on the cache (may be briefly stale; see the module docstring)."""
        return await self.collection.find(query).sort(sort).limit(limit).to_list()
