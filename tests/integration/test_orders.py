"""The orders service on the real stack: placing orders priced and reserved by inventory,
bad input, ownership, the admin lifecycle, the open-order cap, idempotent retries, stock
under concurrency, expiry racing the owner, and inventory's order-events consumer."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shopmesh_inventory.ledger_check import check
from shopmesh_inventory.records import ReservationState
from shopmesh_platform.docstore import PendingEvent
from shopmesh_stack.stack import Stack
from tests.integration.conftest import TEST_SERVICE_ENV
from tests.integration.helpers import http
from tests.integration.inventory_client import admin_account, counters, create_product, database, domain, ledger_rows
from tests.integration.orders_client import (
    cancel_order,
    derived_order_id,
    get_order,
    order_body,
    orders_domain,
    place,
    post_order,
    sample,
    set_status,
    transitions,
)
from tests.integration.users_client import Account, register_patiently
from tests.polling import eventually

EXPIRY = float(TEST_SERVICE_ENV["SHOPMESH_ORDERS_EXPIRY_SECONDS"])
GRACE = float(TEST_SERVICE_ENV["SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS"])
PENDING, CANCELLED = "ORDER_STATUS_PENDING", "ORDER_STATUS_CANCELLED"
DUPLICATES = {"group": "inventory.order-events", "topic": "order-events", "outcome": "duplicate"}
# 30 concurrent orders at 5 PENDING orders per customer.
SHOPPERS = 6


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return admin_account(stack)


@pytest.fixture(scope="module")
def shoppers(stack: Stack) -> list[Account]:
    """Customers shared by the module's tests (registering is slow); see `no_pending_orders`."""
    return [register_patiently(stack, attempts=4) for _ in range(SHOPPERS)]


def cancel_pending(stack: Stack, account: Account) -> None:
    listed = http(stack, "GET", f"/api/v1/orders?status={PENDING}&pageSize=100", None, account.bearer)
    assert listed.status == 200, listed.body
    for order in listed.json().get("orders", []):
        assert cancel_order(stack, account, order["id"]).status == 200


@pytest.fixture(autouse=True)
def no_pending_orders(stack: Stack, shoppers: list[Account]) -> Iterator[None]:
    """Every test starts with shoppers that hold no PENDING order (the cap is per customer)."""
    for shopper in shoppers:
        cancel_pending(stack, shopper)
    yield


@pytest.fixture
def customer(shoppers: list[Account]) -> Account:
    return shoppers[0]


@pytest.fixture
def stranger(shoppers: list[Account]) -> Account:
    return shoppers[1]


@pytest.fixture
def product(stack: Stack, admin: Account) -> Iterator[str]:
    """A fresh product at 5.00 USD with 100 units, so stock numbers are exact whatever else runs."""
    reply = create_product(stack, admin, stock=100, price=5.0)
    assert reply.status == 200, reply.body
    yield reply.json()["id"]


def violations(body: dict[str, Any]) -> set[str]:
    return {v["field"] for d in body.get("details", []) if "fieldViolations" in d for v in d["fieldViolations"]}


def reason(body: dict[str, Any]) -> str:
    return next((str(d["reason"]) for d in body.get("details", []) if "reason" in d), "")


def ledger_is_consistent(stack: Stack) -> None:
    report = asyncio.run(check(stack.postgres.dsn("inventory")))
    assert report.consistent, report.mismatches


async def reservation_state(stack: Stack, order_id: str) -> ReservationState | None:
    async with database(stack) as connection:
        state = await connection.fetchval("SELECT state FROM reservations WHERE order_id = $1", uuid.UUID(order_id))
    return None if state is None else ReservationState(state)


async def ledger_reasons(stack: Stack, order_id: str) -> list[str]:
    async with database(stack) as connection:
        rows = await connection.fetch(
            "SELECT coalesce(reason, '') AS reason FROM stock_ledger WHERE order_id = $1 ORDER BY id",
            uuid.UUID(order_id),
        )
    return [row["reason"] for row in rows]


async def product_movements_since(stack: Stack, product_id: str, after_ledger_id: int) -> int:
    """How much `available` moved through ledger rows after `after_ledger_id`."""
    async with database(stack) as connection:
        moved = await connection.fetchval(
            """SELECT coalesce(sum(on_hand_delta - reserved_delta), 0) FROM stock_ledger
               WHERE product_id = $1 AND id > $2""",
            product_id,
            after_ledger_id,
        )
    return int(moved)


async def last_ledger_id(stack: Stack) -> int:
    async with database(stack) as connection:
        return int(await connection.fetchval("SELECT coalesce(max(id), 0) FROM stock_ledger"))


async def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def available(stack: Stack, product_id: str) -> int:
    on_hand, reserved = asyncio.run(counters(stack, product_id))
    return on_hand - reserved


# Placing an order


def test_ordering_prod_123_twice_reserves_two_units_at_the_catalog_price(stack: Stack, customer: Account) -> None:
    mark = asyncio.run(last_ledger_id(stack))
    before = available(stack, "prod-123")
    created_before = sample(stack, "orders", "orders_total", status="PENDING")

    order = place(stack, customer, [("prod-123", 2, 29.99)])

    assert order["status"] == PENDING
    assert order["totalAmount"] == 59.98
    assert order["userId"] == customer.id
    assert str(uuid.UUID(order["id"])) == order["id"]
    assert order["items"] == [
        {"productId": "prod-123", "name": order["items"][0]["name"], "quantity": 2, "price": 29.99, "lineTotal": 59.98}
    ]
    assert order["shippingAddress"]["zipCode"] == "N1 7AA"
    assert order["createdAt"] and order["updatedAt"] and order["currency"] == "USD"
    # Available stock went down by exactly this order's 2 units (plus whatever else moved it meanwhile).
    assert asyncio.run(ledger_rows(stack, order["id"])) == [("prod-123", "reserve", 0, 2)]
    others = asyncio.run(product_movements_since(stack, "prod-123", mark)) + 2
    assert available(stack, "prod-123") == before - 2 + others
    ledger_is_consistent(stack)
    assert get_order(stack, customer, order["id"]).json() == order
    assert sample(stack, "orders", "orders_total", status="PENDING") == created_before + 1


def test_a_retried_create_order_makes_one_order_and_one_reservation(
    stack: Stack, customer: Account, product: str
) -> None:
    body = order_body(customer, [(product, 3, 5.0)])
    first = post_order(stack, customer, body)
    assert first.status == 200, first.body
    with ThreadPoolExecutor(max_workers=4) as pool:
        retries = list(pool.map(lambda _: post_order(stack, customer, body), range(4)))
    assert {reply.status for reply in retries} == {200}
    assert {reply.json()["id"] for reply in retries} == {first.json()["id"]}
    assert first.json()["id"] == derived_order_id(customer, body["requestId"])
    assert asyncio.run(ledger_rows(stack, first.json()["id"])) == [(product, "reserve", 0, 3)]
    assert available(stack, product) == 97
    listed = http(stack, "GET", "/api/v1/orders?pageSize=100", None, customer.bearer).json()["orders"]
    assert [order["id"] for order in listed].count(first.json()["id"]) == 1
    # The same request id with another body is refused; nothing more is reserved.
    other = post_order(stack, customer, {**body, "items": [{"productId": product, "quantity": 4, "price": 5.0}]})
    assert other.status == 400, other.body
    assert reason(other.json()) == "REQUEST_ID_REUSED"
    assert available(stack, product) == 97


# Bad input: the right status naming the field, nothing written, nothing reserved


def _items(product: str, **line: Any) -> list[dict[str, Any]]:
    return [{"productId": product, "quantity": 1, "price": 5.0, **line}]


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("tampered price", lambda p, a: {"items": _items(p, price=0.01)}, 400, "items[0].price"),
    ("unknown product", lambda p, a: {"items": _items("prod-nope-404")}, 400, "items[0].product_id"),
    ("zero quantity", lambda p, a: {"items": _items(p, quantity=0)}, 400, "items[0].quantity"),
    ("negative quantity", lambda p, a: {"items": _items(p, quantity=-2)}, 400, "items[0].quantity"),
    ("huge quantity", lambda p, a: {"items": _items(p, quantity=1001)}, 400, "items[0].quantity"),
    ("int32 overflow", lambda p, a: {"items": _items(p, quantity=10**12)}, 400, "quantity"),
    ("empty items", lambda p, a: {"items": []}, 400, "items"),
    ("duplicate lines", lambda p, a: {"items": _items(p) + _items(p)}, 400, "items"),
    (
        "missing city",
        lambda p, a: {"shippingAddress": {"street": "1 Way", "state": "S", "zipCode": "1", "country": "GB"}},
        400,
        "shipping_address.city",
    ),
    ("no address", lambda p, a: {"shippingAddress": None}, 400, "shipping_address"),
    ("another user's id", lambda p, a: {"userId": a}, 403, "user_id"),
    ("string for a number", lambda p, a: {"items": _items(p, quantity="two")}, 400, "quantity"),
]


@pytest.mark.parametrize("bad", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_orders_are_refused_naming_the_field_and_leave_nothing_behind(
    stack: Stack, customer: Account, product: str, bad: tuple[str, Any, int, str]
) -> None:
    case, change, status, field = bad
    body = {**order_body(customer, [(product, 1, 5.0)]), **change(product, str(uuid.uuid4()))}
    body = {key: value for key, value in body.items() if value is not None}
    reply = post_order(stack, customer, body)
    assert reply.status == status, (case, reply.body)
    text = reply.body.decode()
    assert field in violations(reply.json()) or field in text, (case, text)
    assert_nothing_written(stack, customer, body["requestId"], product)


def assert_nothing_written(stack: Stack, customer: Account, request_id: str, product: str) -> None:
    order_id = derived_order_id(customer, request_id)
    assert get_order(stack, customer, order_id).status == 404
    assert asyncio.run(ledger_rows(stack, order_id)) == []
    assert available(stack, product) == 100


@pytest.mark.parametrize(
    ("raw", "status"), [('{"userId": "x", "items": [', 400), (None, 413)], ids=["malformed JSON", "2 MB body"]
)
def test_unparseable_orders_are_refused_at_the_edge(
    stack: Stack, customer: Account, product: str, raw: str | None, status: int
) -> None:
    request_id = str(uuid.uuid4())
    if raw is None:
        body = order_body(customer, [(product, 1, 5.0)], requestId=request_id)
        body["shippingAddress"] = {**body["shippingAddress"], "street": "x" * (2 * 1024 * 1024)}
        raw = json.dumps(body)
    reply = post_order(stack, customer, raw)
    assert reply.status == status, reply.body[:300]
    assert_nothing_written(stack, customer, request_id, product)


@pytest.mark.parametrize("path", ["/api/v1/orders/not-a-uuid", "/api/v1/orders/12345"])
def test_a_malformed_order_id_is_400_naming_it(stack: Stack, customer: Account, path: str) -> None:
    reply = http(stack, "GET", path, None, customer.bearer)
    assert reply.status == 400, reply.body
    assert "id" in violations(reply.json())


def test_another_users_order_is_404_and_admins_see_it(
    stack: Stack, customer: Account, stranger: Account, admin: Account, product: str
) -> None:
    order = place(stack, customer, [(product, 1, 5.0)])
    for reply in (get_order(stack, stranger, order["id"]), cancel_order(stack, stranger, order["id"])):
        assert reply.status == 404, reply.body
        assert reason(reply.json()) == "ORDER_NOT_FOUND"
    assert get_order(stack, stranger, str(uuid.uuid4())).status == 404
    assert get_order(stack, admin, order["id"]).json()["id"] == order["id"]
    # A customer lists only their own; naming another user is refused; admins filter by user and status.
    theirs = http(stack, "GET", "/api/v1/orders?pageSize=100", None, stranger.bearer).json().get("orders", [])
    assert order["id"] not in [o["id"] for o in theirs]
    assert http(stack, "GET", f"/api/v1/orders?userId={customer.id}", None, stranger.bearer).status == 403
    mine = http(stack, "GET", f"/api/v1/orders?userId={customer.id}&status={PENDING}", None, admin.bearer).json()
    assert [o["id"] for o in mine["orders"]] == [order["id"]]
    cancelled = http(stack, "GET", f"/api/v1/orders?userId={customer.id}&status={CANCELLED}", None, admin.bearer)
    assert order["id"] not in [o["id"] for o in cancelled.json().get("orders", [])]
    assert get_order(stack, customer, order["id"]).json()["status"] == PENDING


def test_listing_pages_newest_first(stack: Stack, customer: Account, product: str) -> None:
    placed = [place(stack, customer, [(product, 1, 5.0)])["id"] for _ in range(3)]
    seen: list[str] = []
    token = ""
    while True:
        page = http(stack, "GET", f"/api/v1/orders?pageSize=2&pageToken={token}", None, customer.bearer).json()
        seen += [order["id"] for order in page["orders"]]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert seen[:3] == list(reversed(placed))
    assert len(seen) == len(set(seen))
    assert http(stack, "GET", "/api/v1/orders?pageToken=bm9wZQ", None, customer.bearer).status == 400


# The lifecycle


def test_admin_cancels_a_pending_order_and_illegal_transitions_are_refused(
    stack: Stack, customer: Account, admin: Account, product: str
) -> None:
    order = place(stack, customer, [(product, 2, 5.0)])
    for target in ("ORDER_STATUS_CONFIRMED", "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"):
        refused = set_status(stack, admin, order["id"], target)
        assert refused.status == 400, refused.body
        assert refused.json()["code"] == 9  # FAILED_PRECONDITION
        assert (
            "PENDING" in refused.json()["message"] and target.removeprefix("ORDER_STATUS_") in refused.json()["message"]
        )
    assert set_status(stack, customer, order["id"], CANCELLED).status == 403
    cancelled = set_status(stack, admin, order["id"], CANCELLED)
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json()["status"] == CANCELLED
    assert cancelled.json()["cancellationReason"] == "cancelled_by_admin"
    again = set_status(stack, admin, order["id"], CANCELLED)
    assert again.status == 400 and "CANCELLED" in again.json()["message"]
    assert set_status(stack, admin, str(uuid.uuid4()), CANCELLED).status == 404
    # Inventory released the stock on OrderCancelled.
    asyncio.run(
        eventually(lambda: reservation_state(stack, order["id"]), lambda s: s is ReservationState.RELEASED, timeout=60)
    )
    assert asyncio.run(ledger_rows(stack, order["id"])) == [(product, "reserve", 0, 2), (product, "release", 0, -2)]
    assert available(stack, product) == 100


def test_the_owner_cancels_once_and_inventory_releases(stack: Stack, customer: Account, product: str) -> None:
    order = place(stack, customer, [(product, 4, 5.0)])
    first = cancel_order(stack, customer, order["id"])
    assert first.status == 200 and first.json()["status"] == CANCELLED
    assert first.json()["cancellationReason"] == "cancelled_by_owner"
    assert cancel_order(stack, customer, order["id"]).json() == first.json()  # a no-op, not a second event
    assert [t.version for t in asyncio.run(transitions(stack, order["id"]))] == [1, 2]
    asyncio.run(
        eventually(lambda: reservation_state(stack, order["id"]), lambda s: s is ReservationState.RELEASED, timeout=60)
    )
    assert available(stack, product) == 100


def test_a_customer_holds_at_most_five_pending_orders(stack: Stack, customer: Account, product: str) -> None:
    orders = [place(stack, customer, [(product, 1, 5.0)]) for _ in range(5)]
    body = order_body(customer, [(product, 1, 5.0)])
    refused = post_order(stack, customer, body)
    assert refused.status == 429, refused.body
    assert reason(refused.json()) == "TOO_MANY_PENDING_ORDERS"
    assert asyncio.run(ledger_rows(stack, derived_order_id(customer, body["requestId"]))) == []
    assert cancel_order(stack, customer, orders[0]["id"]).status == 200
    assert post_order(stack, customer, body).status == 200


def test_thirty_concurrent_orders_for_the_last_ten_units_reserve_exactly_ten(
    stack: Stack, admin: Account, shoppers: list[Account]
) -> None:
    created = create_product(stack, admin, stock=10, price=7.5)
    assert created.status == 200, created.body
    scarce = created.json()["id"]
    buyers = [shopper for shopper in shoppers for _ in range(5)]

    with ThreadPoolExecutor(max_workers=30) as pool:
        replies = list(pool.map(lambda c: post_order(stack, c, order_body(c, [(scarce, 1, 7.5)])), buyers))

    placed = [reply for reply in replies if reply.status == 200]
    refused = [reply for reply in replies if reply.status != 200]
    assert len(placed) == 10, [r.body[:200] for r in refused]
    assert len(refused) == 20
    for reply in refused:
        assert reply.status == 400 and reply.json()["code"] == 9, reply.body
        assert reason(reply.json()) == "INSUFFICIENT_STOCK" and scarce in reply.json()["message"]
    reserves = asyncio.run(product_ledger(stack, scarce))
    assert reserves.count(("reserve", 0, 1)) == 10
    on_hand, reserved = asyncio.run(counters(stack, scarce))
    assert on_hand == 10 and 0 <= reserved <= 10
    ledger_is_consistent(stack)


async def product_ledger(stack: Stack, product_id: str) -> list[tuple[str, int, int]]:
    async with database(stack) as connection:
        rows = await connection.fetch(
            "SELECT kind, on_hand_delta, reserved_delta FROM stock_ledger WHERE product_id = $1 ORDER BY id",
            product_id,
        )
    return [(r["kind"], int(r["on_hand_delta"]), int(r["reserved_delta"])) for r in rows]


# Expiry: orders decides, inventory releases on OrderCancelled


def test_an_unpaid_order_expires_and_inventory_restores_its_stock(
    stack: Stack, customer: Account, product: str
) -> None:
    order = place(stack, customer, [(product, 3, 5.0)])
    expires = dt.datetime.fromisoformat(order["reservationExpiresAt"].replace("Z", "+00:00"))
    assert (
        abs((expires - dt.datetime.fromisoformat(order["createdAt"].replace("Z", "+00:00"))).total_seconds() - EXPIRY)
        < 1
    )

    async def status() -> str:
        return str(get_order(stack, customer, order["id"]).json()["status"])

    asyncio.run(eventually(status, lambda s: s == CANCELLED, timeout=EXPIRY + 60, interval=0.5))
    assert get_order(stack, customer, order["id"]).json()["cancellationReason"] == "reservation_expired"
    asyncio.run(
        eventually(lambda: reservation_state(stack, order["id"]), lambda s: s is ReservationState.RELEASED, timeout=60)
    )
    assert asyncio.run(ledger_rows(stack, order["id"])) == [(product, "reserve", 0, 3), (product, "release", 0, -3)]
    # Released for the expiry, not by the orphan reaper: inventory had seen the order (EXPIRY > GRACE).
    assert asyncio.run(ledger_reasons(stack, order["id"]))[-1] == "reservation_expired"
    assert available(stack, product) == 100
    ledger_is_consistent(stack)


def test_owner_cancel_racing_expiry_applies_once(stack: Stack, admin: Account, shoppers: list[Account]) -> None:
    created = create_product(stack, admin, stock=100, price=2.0)
    assert created.status == 200, created.body
    racing = created.json()["id"]
    owners = [owner for owner in shoppers[:4] for _ in range(5)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        orders = list(zip(owners, pool.map(lambda owner: place(stack, owner, [(racing, 1, 2.0)]), owners), strict=True))
    assert asyncio.run(product_ledger(stack, racing)).count(("reserve", 0, 1)) == 20

    async def race(owner: Account, order: dict[str, Any]) -> None:
        expires = dt.datetime.fromisoformat(order["reservationExpiresAt"].replace("Z", "+00:00"))
        await eventually(utc_now, lambda now: now >= expires, timeout=EXPIRY + 60)
        async with orders_domain(stack) as (replica, _):
            # The owner, a second replica's expiry and the service's own loop, all at once.
            await asyncio.gather(
                asyncio.to_thread(cancel_order, stack, owner, order["id"]), replica.expire(order["id"])
            )

    async def all_races() -> None:
        await asyncio.gather(*(race(owner, order) for owner, order in orders))

    asyncio.run(all_races())
    for _, order in orders:
        history = asyncio.run(transitions(stack, order["id"]))
        assert [t.version for t in history] == [1, 2], order["id"]
        assert history[1].state["status"] == "CANCELLED"
        assert [t.event.event_type.rsplit(".", 1)[-1] for t in history] == ["OrderCreated", "OrderCancelled"]

    async def released() -> int:
        states = [await reservation_state(stack, order["id"]) for _, order in orders]
        return states.count(ReservationState.RELEASED)

    asyncio.run(eventually(released, lambda count: count == 20, timeout=90, interval=0.5))
    for _, order in orders:
        assert asyncio.run(ledger_rows(stack, order["id"])) == [(racing, "reserve", 0, 1), (racing, "release", 0, -1)]
    assert available(stack, racing) == 100
    ledger_is_consistent(stack)


# Inventory's consumer of order-events


def test_a_redelivered_order_cancelled_releases_once(stack: Stack, customer: Account, product: str) -> None:
    order = place(stack, customer, [(product, 5, 5.0)])
    assert cancel_order(stack, customer, order["id"]).status == 200
    asyncio.run(
        eventually(lambda: reservation_state(stack, order["id"]), lambda s: s is ReservationState.RELEASED, timeout=60)
    )
    duplicates_before = sample(stack, "inventory", "consumer_events_total", **DUPLICATES)

    async def redeliver() -> None:
        # The very event the relay published, sent to Kafka twice more (as a relay crash or a redrive would).
        history = await transitions(stack, order["id"])
        async with orders_domain(stack) as (_, store):
            document = await store.log.collection.find_one({"_id": history[1].id})
        assert document is not None
        envelope = PendingEvent.from_document(document).envelope()
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for _ in range(2):
                await producer.send_and_wait(
                    envelope.topic, envelope.value, key=envelope.key, headers=list(envelope.headers)
                )
        finally:
            await producer.stop()

    asyncio.run(redeliver())

    async def duplicates() -> float:
        return sample(stack, "inventory", "consumer_events_total", **DUPLICATES)

    asyncio.run(eventually(duplicates, lambda count: count >= duplicates_before + 2, timeout=60, interval=0.5))
    assert asyncio.run(ledger_rows(stack, order["id"])) == [(product, "reserve", 0, 5), (product, "release", 0, -5)]
    assert available(stack, product) == 100


async def test_a_real_orders_reservation_is_not_reaped(stack: Stack, customer: Account, product: str) -> None:
    order = await asyncio.to_thread(place, stack, customer, [(product, 2, 5.0)])

    async def seen() -> bool:
        async with database(stack) as connection:
            found = await connection.fetchval(
                "SELECT count(*) FROM seen_orders WHERE order_id = $1", uuid.UUID(order["id"])
            )
        return bool(found)

    # OrderCreated reached inventory well within the grace period...
    await eventually(seen, bool, timeout=GRACE)
    async with domain(stack) as inventory:
        assert (await inventory.get_reservation(order["id"])).state is ReservationState.ACTIVE
