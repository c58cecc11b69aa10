"""Ask FerretDB whether it hands a query's filter to PostgreSQL: its `explain` reply's `filterPushdown`.

FerretDB 1.24's `explain` (internal/handler/msg_explain.go) prepares a query
as `find` and `aggregate` do: keys with a dot are dropped (nested pushdown is
off by default), then the PostgreSQL backend (internal/backends/postgresql,
`prepareWhereClause`) turns top-level equalities into a WHERE clause and skips
the rest (ranges, `$in`, `$or`, `$exists`). `filterPushdown` is true when that
clause is not empty: PostgreSQL selects the documents and FerretDB decodes only
those. False means FerretDB reads and decodes the whole collection.

The collection must exist: FerretDB explains a missing one as not pushed down.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection


async def find_pushed_down(collection: AsyncCollection[Any], query: dict[str, Any]) -> bool:
    """Whether `collection.find(query)` (also find_one, update and delete filters) is pushed down."""
    reply = await collection.database.command("explain", {"find": collection.name, "filter": query})
    return bool(reply["filterPushdown"])


async def count_pushed_down(collection: AsyncCollection[Any], query: dict[str, Any]) -> bool:
    """Whether `collection.count_documents(query)` is pushed down (PyMongo sends it as this pipeline)."""
    pipeline = [{"$match": query}, {"$group": {"_id": 1, "n": {"$sum": 1}}}]
    reply = await collection.database.command(
        "explain", {"aggregate": collection.name, "pipeline": pipeline, "cursor": {}}
    )
    return bool(reply["filterPushdown"])
