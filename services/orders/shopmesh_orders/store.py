"""Orders in the MongoDB-wire store (FerretDB locally), on the platform's insert-only primitives.

Every state change is an inserted transition `<order id>:<version>` carrying the
new state and its event (`TransitionLog`): creating is version 1, and of two
concurrent changes of one order exactly one inserts the next version. Reads of
one order go to the log; listings, the open-order count and the expiry scan go
to the derived `CurrentStateCache` (refreshed after each insert, rebuilt at start).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

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
NEWEST_FIRST = [("state.created_at", DESCENDING), ("_id", DESCENDING)]


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
                    [("state.user_id", ASCENDING), ("state.created_at", DESCENDING), ("_id", DESCENDING)],
                    name="user_newest_first",
                ),
                IndexModel([("state.created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"),
                IndexModel([("state.status", ASCENDING), ("state.expires_at", ASCENDING)], name="status_expiry"),
            ],
        )

    async def prepare(self) -> None:
        """At start: indexes, and the cache rebuilt from the log (a crash may have left it behind)."""
        await ensure_indexes(self.log, self.cache)
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

    async def count_pending(self, user_id: str) -> int:
        return await self.cache.collection.count_documents(
            {"state.user_id": user_id, "state.status": OrderStatus.PENDING.value}
        )

    async def page(
        self, *, user_id: str, status: OrderStatus | None, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Order]:
        """Orders newest first (ties by id), optionally of one user and one status, after a cursor."""
        query: dict[str, Any] = {}
        if user_id:
            query["state.user_id"] = user_id
        if status is not None:
            query["state.status"] = status.value
        if after is not None:
            created_at, order_id = after
            query["$or"] = [
                {"state.created_at": {"$lt": created_at}},
                {"state.created_at": created_at, "_id": {"$lt": order_id}},
            ]
        documents = await self.cache.find(query, NEWEST_FIRST, limit)
        return [Order.from_state(document["state"], int(document["version"])) for document in documents]

    async def due_for_expiry(self, now: dt.datetime, limit: int) -> list[str]:
        """Ids of PENDING orders whose deadline has passed, oldest deadline first (per the cache)."""
        documents = await self.cache.find(
            {"state.status": OrderStatus.PENDING.value, "state.expires_at": {"$lte": now}},
            [("state.expires_at", ASCENDING)],
            limit,
        )
        return [str(document["_id"]) for document in documents]
