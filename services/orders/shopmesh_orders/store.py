"""Orders in the MongoDB-wire store (FerretDB locally), on the platform's insert-only primitives.

Every state change is an inserted transition `<order id>:<version>` carrying the
new state and its event (`TransitionLog`): creating is version 1, and of two
concurrent changes of one order exactly one inserts the next version. Reads of
one order go to the log; listings, the open-order count and the expiry scan go
to the derived `CurrentStateCache` (refreshed after each insert, rebuilt at start).

Each cache entry carries `user_id`, `status`, `created_at` and `expires_at` as
top-level fields (`listed_fields`): FerretDB 1.24 hands PostgreSQL only
equality on top-level fields, so every listing query starts with such an
equality on the first key of a declared index (`user_id` or `status`) and
FerretDB decodes only what it selects; the rest of the filter (a range, the
page cursor's `$or`) and the sort run on that subset. The `*_query` functions
build the filters, so a test can ask FerretDB whether each is pushed down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from shopmesh_orders.records import Order, OrderStatus
from shopmesh_platform.docstore import (
    CurrentStateCache,
    NextState,
    OutboxEvent,
    Transition,
    TransitionLog,
    ensure_indexes,
)
from shopmesh_platform.docstore.records import Document

LOG_NAME = "orders"
# What a decision returns: the order's next version and its event, or None when the state does not allow it.
Decision = Callable[[Order | None], tuple[Order, OutboxEvent] | None]
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
OLDEST_DEADLINE_FIRST = [("expires_at", ASCENDING)]
RETIRED_CACHE_INDEXES = ("user_newest_first", "newest_first", "status_expiry")
# The version of `listed_fields`: bump it whenever they change, so `reshape_cache` rewrites older entries.
CACHE_SHAPE = 2


def listed_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level fields of a cache entry that the listing queries filter and sort on."""
    return {key: state[key] for key in ("user_id", "status", "created_at", "expires_at")}


def pending_count_query(user_id: str) -> Document:
    """A customer's PENDING orders (the open-order cap of CreateOrder)."""
    return {"user_id": user_id, "status": OrderStatus.PENDING.value}


def page_query(user_id: str, status: OrderStatus | None, after: tuple[dt.datetime, str] | None) -> Document:
    """ListOrders: one user's (or, for admins, everyone's) orders, optionally of one status, after a cursor."""
    query: Document = {}
    if user_id:
        query["user_id"] = user_id
    if status is not None:
        query["status"] = status.value
    if after is not None:
        created_at, order_id = after
        query["$or"] = [
            {"created_at": {"$lt": created_at}},
            {"created_at": created_at, "_id": {"$lt": order_id}},
        ]
    return query


def expiry_query(now: dt.datetime) -> Document:
    """PENDING orders whose deadline has passed (the status equality selects; the range filters those)."""
    return {"status": OrderStatus.PENDING.value, "expires_at": {"$lte": now}}


def transition_log(database: AsyncDatabase[Document]) -> TransitionLog:
    return TransitionLog(database, LOG_NAME)


def _order(transition: Transition) -> Order:
    return Order.from_state(transition.state, transition.version)


class OrderStore:
    """The orders' transition log and its current-state cache."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.log = transition_log(database)
        self.cache = CurrentStateCache(
            database,
            self.log,
            listing_indexes=[
                IndexModel(
                    [("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                    name="user_id_newest_first",
                ),
                # Admins' listing of everyone's orders (MongoDB sorts through it; FerretDB decodes them all).
                IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="created_at_newest_first"),
                IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)], name="status_expires_at"),
            ],
            lift=listed_fields,
            shape=CACHE_SHAPE,
        )

    async def prepare(self) -> None:
        """At start: indexes, and the cache rebuilt from the log (a crash may have left it behind).

        The rebuild also rewrites every entry in the current shape (entries written before
        `listed_fields` existed had their fields only under `state`).
        """
        await ensure_indexes(self.log, self.cache)
        for retired in RETIRED_CACHE_INDEXES:
            # A previous version's index on `state.*` paths: nothing queries them any more.
            with contextlib.suppress(OperationFailure):
                await self.cache.collection.drop_index(retired)
        await self.cache.rebuild_all()

    async def get(self, order_id: str) -> Order | None:
        latest = await self.log.latest(order_id)
        return None if latest is None else _order(latest)

    async def create(self, order: Order, event: OutboxEvent) -> Order:
        """Insert version 1 with its OrderCreated; `TransitionConflict` if the order exists."""
        transition = await self.log.append(order.id, 0, order.to_state(), event)
        await self.cache.refresh(transition)
        return _order(transition)

    async def transition(self, order_id: str, decide: Decision, *, cause: str | None = None) -> Order:
        """Read the latest version, decide, insert the next (see `TransitionLog.transition`)."""

        def decide_state(current: Transition | None) -> NextState | None:
            decision = decide(None if current is None else _order(current))
            if decision is None:
                return None
            order, event = decision
            return NextState(state=order.to_state(), event=event)

        transition = await self.log.transition(order_id, decide_state, cause=cause)
        await self.cache.refresh(transition)
        return _order(transition)

    async def refresh_cache(self, order_id: str) -> None:
        await self.cache.rebuild(order_id)

    async def reshape_cache(self) -> int:
        """Rewrite cache entries of an older shape (a previous version's replica wrote them); returns how many."""
        return await self.cache.reshape()

    async def count_pending(self, user_id: str) -> int:
        return await self.cache.collection.count_documents(pending_count_query(user_id))

    async def page(
        self, *, user_id: str, status: OrderStatus | None, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Order]:
        """Orders newest first (ties by id), optionally of one user and one status, after a cursor."""
        documents = await self.cache.find(page_query(user_id, status, after), NEWEST_FIRST, limit)
        return [Order.from_state(document["state"], int(document["version"])) for document in documents]

    async def due_for_expiry(self, now: dt.datetime, limit: int) -> list[str]:
        """Ids of PENDING orders whose deadline has passed, oldest deadline first (per the cache)."""
        documents = await self.cache.find(expiry_query(now), OLDEST_DEADLINE_FIRST, limit)
        return [str(document["_id"]) for document in documents]
