"""The orders store's queries on the real FerretDB: pushed down to PostgreSQL, on the cache's top-level fields.

Each test uses its own database (the store prepared as the service prepares it),
so the orders service running in the stack is not disturbed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from shopmesh_orders import events
from shopmesh_orders.records import Address, Order, OrderLine, OrderStatus
from shopmesh_orders.store import (
    OrderStore,
    expiry_query,
    page_query,
    pending_count_query,
)
from shopmesh_platform.docstore.records import utc_now_ms
from shopmesh_platform.docstore.transitions import aggregate_filter, cause_filter
from shopmesh_stack.stack import Stack
from tests.integration.pushdown import count_pushed_down, find_pushed_down

ADDRESS = Address("1 Analytical Way", "London", "Greater London", "N1 7AA", "GB")


@pytest.fixture
async def store(stack: Stack) -> AsyncIterator[OrderStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.ferretdb.url, serverSelectionTimeoutMS=10_000)
    name = f"orders_{uuid.uuid4().hex[:12]}"
    try:
        store = OrderStore(client[name])
        await store.prepare()
        yield store
    finally:
        await client.drop_database(name)
        await client.close()


async def place(store: OrderStore, user_id: str, *, created_at: dt.datetime, expires_in: dt.timedelta) -> Order:
    order = Order(
        id=str(uuid.uuid4()),
        user_id=user_id,
        status=OrderStatus.PENDING,
        lines=(OrderLine("prod-123", "Widget", 1, 500),),
        total_minor=500,
        currency="USD",
        shipping_address=ADDRESS,
        created_at=created_at,
        updated_at=created_at,
        expires_at=created_at + expires_in,
        cancellation_reason="",
        request_fingerprint="fingerprint",
        version=1,
    )
    return await store.create(order, events.order_created(order))


async def write_previous_shape(store: OrderStore, order_id: str) -> None:
    """The cache entry as the previous version wrote it: the state only, nothing lifted to the top level."""
    latest = await store.log.latest(order_id)
    assert latest is not None
    await store.cache.collection.replace_one(
        {"_id": order_id},
        {"version": latest.version, "state": dict(latest.state), "committed_at": latest.committed_at},
    )


async def test_the_hot_order_queries_are_pushed_down_to_postgresql(store: OrderStore) -> None:
    now = utc_now_ms()
    order = await place(store, "user-a", created_at=now, expires_in=dt.timedelta(minutes=15))
    cache, log = store.cache.collection, store.log.collection
    cursor = (now, order.id)

    # Every CreateOrder counts the customer's open orders; the expiry loop scans each few seconds.
    assert await count_pushed_down(cache, pending_count_query("user-a"))
    assert await find_pushed_down(cache, expiry_query(now))
    # A customer's listing, first page and later ones, with and without a status.
    for status in (None, OrderStatus.PENDING):
        for after in (None, cursor):
            assert await find_pushed_down(cache, page_query("user-a", status, after)), (status, after)
    # An admin's listing of one status.
    assert await find_pushed_down(cache, page_query("", OrderStatus.CONFIRMED, cursor))
    # Reading one order and the consumers' inbox go to the log.
    assert await find_pushed_down(log, aggregate_filter(order.id))
    assert await find_pushed_down(log, cause_filter(f"orders.payment-events:{uuid.uuid4()}"))
    # Only an admin's listing of every order decodes the whole cache (and sorts it in FerretDB).
    assert not await find_pushed_down(cache, page_query("", None, cursor))


async def test_entries_carry_the_listed_fields_at_the_top_level(store: OrderStore) -> None:
    now = utc_now_ms()
    placed = await place(store, "user-b", created_at=now, expires_in=dt.timedelta(minutes=15))
    confirmed = await store.transition(
        placed.id,
        lambda current: (
            None
            if current is None
            else (current.moved_to(OrderStatus.CONFIRMED, utc_now_ms()), events.order_confirmed(current, "pay-1"))
        ),
    )
    entry = await store.cache.collection.find_one({"_id": placed.id})
    assert entry is not None
    lifted = {key: entry[key] for key in ("user_id", "status", "created_at", "expires_at")}
    assert lifted == {"user_id": "user-b", "status": "CONFIRMED", "created_at": now, "expires_at": placed.expires_at}
    assert (entry["version"], entry["state"]["status"]) == (confirmed.version, "CONFIRMED")


async def test_entries_the_previous_version_wrote_are_not_missed(store: OrderStore) -> None:
    now = utc_now_ms()
    user = f"user-{uuid.uuid4()}"
    orders = [
        await place(store, user, created_at=now - dt.timedelta(minutes=minutes), expires_in=dt.timedelta(minutes=10))
        for minutes in (30, 20, 5)  # the first two are past their deadline
    ]
    newest_first = [o.id for o in reversed(orders)]

    async def seen() -> tuple[int, list[str], list[str]]:
        listed = await store.page(user_id=user, status=None, after=None, limit=10)
        due = [o for o in await store.due_for_expiry(utc_now_ms(), 100) if o in {x.id for x in orders}]
        return await store.count_pending(user), [o.id for o in listed], due

    assert await seen() == (3, newest_first, [orders[0].id, orders[1].id])

    # A previous version's replica wrote two entries (a rolling deploy): the queries cannot see them...
    for order in orders[:2]:
        await write_previous_shape(store, order.id)
    assert await seen() == (1, [orders[2].id], [])
    # ...until the expiry loop's reshape rewrites them,
    assert await store.reshape_cache() == 2
    assert await seen() == (3, newest_first, [orders[0].id, orders[1].id])
    # and the rebuild at start rewrites every entry.
    for order in orders:
        await write_previous_shape(store, order.id)
    await store.prepare()
    assert await seen() == (3, newest_first, [orders[0].id, orders[1].id])
    assert await store.reshape_cache() == 0
